"""A month of a busy newsroom in the ledger: how big it grows per file, and what retention keeps.

Each simulated day, ``--per-day`` stills arrive and go through the real stages (a stand-in for DeepVA that finishes
every job at once, the daemon's own ledger, sidecars written next to the media); a tenth of them change once after
publishing (a second version), and the desk moves each day's files away two days later. The clock is simulated, so a
month takes minutes. Printed: the ledger's size and bytes per file after the month, then after a retention sweep
with ``--retention-days`` (the shipped default is 90; a shorter one shows what a sweep removes).

    .venv/bin/python benchmarks/ledger_month.py                  # 30 days x 2,000 files
    .venv/bin/python benchmarks/ledger_month.py --days 5 --per-day 200
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import threading
import time
from pathlib import Path

from common import FIXTURES, report, scratch_dir

from deepva_watch import log
from deepva_watch.watch.discover import reconcile
from deepva_watch.watch.retention import DAY_SECONDS, Retention
from tests.flow.conftest import FakeClient, Flow, make_flow  # the deterministic stand-in for DeepVA the tests use


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=2000)
    parser.add_argument("--retention-days", type=float, default=7)
    args = parser.parse_args()
    log.configure("warning")
    run = scratch_dir("ledger-month")
    watch = run / "watch"
    watch.mkdir()
    ledger_path = run / "ledger.sqlite3"
    flow = make_flow({"ledger": str(ledger_path), "ledger_retention_days": args.retention_days,
                      "folders": [{"path": str(watch), "modules": {"face_recognition": {}}, "settle_seconds": 1}]},
                     FakeClient())
    sample = (FIXTURES / "sample.png").read_bytes()
    started = time.monotonic()
    for day in range(args.days):
        folder = watch / f"day{day:02d}"
        folder.mkdir()
        for index in range(args.per_day):
            (folder / f"still{index:05d}.png").write_bytes(sample + f"{day}-{index}".encode())
        _drain(flow)
        for index in range(0, args.per_day, 10):  # a tenth changes once after publishing
            with (folder / f"still{index:05d}.png").open("ab") as changed:
                changed.write(b"+")
        _drain(flow)
        gone = watch / f"day{day - 2:02d}"
        if gone.exists():  # the desk moves files away after two days
            shutil.rmtree(gone)
        flow.clock.advance(DAY_SECONDS)
        flow.client.jobs.clear()
    files = args.days * args.per_day
    versions = files + files // 10
    _checkpoint(ledger_path)
    size_month = _size(ledger_path)
    retired, pruned = Retention(flow.services, threading.Event()).sweep()
    _checkpoint(ledger_path, vacuum=True)
    size_after = _size(ledger_path)
    report("ledger over a simulated month", [
        ("days x files per day", f"{args.days} x {args.per_day} = {files} files, {versions} versions"),
        ("ledger after the month", f"{size_month / 1e6:.1f} MB = {size_month / versions:.0f} bytes per version "
                                   f"(with its story: about 10 steps)"),
        (f"retention sweep ({args.retention_days:g} days)", f"{retired} rows retired, {pruned} story entries pruned"),
        ("ledger after the sweep (VACUUM)", f"{size_after / 1e6:.1f} MB"),
        ("wall time", f"{time.monotonic() - started:.0f} s"),
    ])


def _drain(flow: Flow) -> None:
    reconcile(flow.services.ledger, flow.config.folders[0], flow.clock.now())
    flow.clock.advance(2)
    for _ in range(2):
        for name in ("settle", "sniff"):
            while flow.runners[name].run_once():
                pass
        for _ in range(400):
            moved = sum(flow.runners[name].run_once() for name in ("upload", "submit"))
            flow.client.finish()
            flow.clock.advance(60)
            moved += sum(flow.runners[name].run_once() for name in ("track", "publish"))
            if not moved:
                break


def _size(path: Path) -> int:
    return sum(candidate.stat().st_size for candidate in path.parent.glob(path.name + "*")
               if not candidate.name.endswith(".lock"))


def _checkpoint(path: Path, *, vacuum: bool = False) -> None:
    """Fold the write-ahead log into the file (and, with ``vacuum``, give freed pages back), so sizes compare."""
    conn = sqlite3.connect(path)
    if vacuum:
        conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


if __name__ == "__main__":
    main()
