"""A burst of 10,000 files written into one folder as fast as possible, in event mode: every file must be recorded
exactly once; the figure is the time from the first write until the last file is in the ledger. Baseline in the same
run: the time the writer itself took (nothing can be faster), and the same burst in poll mode.

    .venv/bin/python benchmarks/discovery_burst.py               # 10,000 files
    .venv/bin/python benchmarks/discovery_burst.py --files 2000
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from discovery_tree import folder_config, quiet_logs


def burst(mode: str, files: int) -> tuple[float, float, int, int, int]:
    from deepva_watch.ledger import SqliteLedger
    from deepva_watch.flow import SystemClock
    from deepva_watch.watch.supervisor import FolderWatch

    run = Path(tempfile.mkdtemp())
    root = run / "watch"
    root.mkdir()
    ledger_path = run / "l.sqlite3"
    ledger = SqliteLedger(ledger_path)
    watch = FolderWatch(folder_config(root, ledger_path, watch=mode, poll_interval_seconds=1.0), ledger,
                        SystemClock(), lambda: None)
    watch.start()
    watch.scanned.wait(30)
    started = time.perf_counter()
    for index in range(files):
        with open(root / f"burst{index:05}.jpg", "wb") as stream:
            stream.write(b"x" * 1024)
    written = time.perf_counter() - started
    reader = sqlite3.connect(ledger_path, timeout=30)
    while reader.execute("SELECT COUNT(DISTINCT relpath) FROM assets").fetchone()[0] < files:
        if time.perf_counter() - started > 300:
            break
        time.sleep(0.01)
    done = time.perf_counter() - started
    time.sleep(2.0)  # let any late duplicate show itself
    rows, distinct = reader.execute("SELECT COUNT(*), COUNT(DISTINCT relpath) FROM assets").fetchone()
    overflows = watch.status().overflows
    watch.stop()
    return written, done, rows, distinct, overflows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    quiet_logs()
    for mode in ("events", "poll"):
        written, done, rows, distinct, overflows = burst(mode, args.files)
        verdict = "each exactly once" if rows == distinct == args.files else "MISMATCH"
        print(f"{mode:7} {args.files} files: writer took {written:.2f} s (baseline); all in the ledger after "
              f"{done:.2f} s; rows {rows}, distinct paths {distinct}: {verdict}; queue overflows {overflows}", flush=True)


if __name__ == "__main__":
    main()
