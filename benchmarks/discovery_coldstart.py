"""Cold start on a folder of 100,000 files that were all published before: how long until the folder is reconciled
(its first scan done, watches up), and proof that nothing is submitted again. The ledger is seeded directly. Baseline
in the same run: `find -printf '%s %T@\\n'` over the same tree.

    .venv/bin/python benchmarks/discovery_coldstart.py            # 100 x 1000 files; target: ready <= 10 s
    .venv/bin/python benchmarks/discovery_coldstart.py --small    # 100 x 100
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

from discovery_tree import folder_config, make_tree, peak_rss_mb, quiet_logs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--mode", default="events", choices=("events", "poll"))
    args = parser.parse_args()
    quiet_logs()
    from deepva_watch.ledger import SqliteLedger
    from deepva_watch.flow import SystemClock
    from deepva_watch.watch.discover import scan_tree
    from deepva_watch.watch.limits import process_watches
    from deepva_watch.watch.supervisor import FolderWatch

    per_folder = 100 if args.small else 1000
    tree = make_tree(Path(tempfile.gettempdir()) / f"deepva-discovery-tree-100x{per_folder}", 100, per_folder)
    ledger_path = Path(tempfile.mkdtemp()) / "ledger.sqlite3"
    folder = folder_config(tree, ledger_path, watch=args.mode)
    seed = SqliteLedger(ledger_path)
    files = scan_tree(folder).files
    seed.observe_new_paths(str(tree), [(p, size, mtime) for p, (size, mtime) in files.items()], time.time())
    conn = sqlite3.connect(ledger_path)
    conn.execute("UPDATE assets SET state = 'published', content_hash = 'seeded', published_at = 1")
    conn.commit()
    seed.close()
    print(f"seeded {len(files)} published rows", flush=True)

    started = time.perf_counter()
    subprocess.run(["find", str(tree), "-printf", "%s %T@\n"], stdout=subprocess.DEVNULL, check=True)
    find_seconds = time.perf_counter() - started

    started = time.perf_counter()
    ledger = SqliteLedger(ledger_path)
    ledger.recover(time.time())
    watch = FolderWatch(folder, ledger, SystemClock(), lambda: None)
    watch.start()
    watch.scanned.wait(120)
    ready = time.perf_counter() - started
    status = watch.status()
    watches = process_watches()
    watch.stop()
    counts = dict(conn.execute("SELECT state, COUNT(*) FROM assets GROUP BY state").fetchall())
    print(f"ours ({args.mode}): ready after {ready:.2f} s (mode {status.mode}, {watches} watches, "
          f"{status.files_seen} files seen); peak RSS {peak_rss_mb():.0f} MB")
    print(f"find over the same tree (baseline): {find_seconds:.2f} s")
    print(f"ledger after the start: {counts} -> {'nothing resubmitted' if counts == {'published': len(files)} else 'CHANGED'}")
    print("target: ready <= 10 s, nothing resubmitted")


if __name__ == "__main__":
    main()
