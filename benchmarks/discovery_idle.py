"""Idle CPU of watching a 100,000-file tree (100 folders) for 60 s: events, polling every 10 s, and watchdog's
PollingObserver at the same 10 s interval as the baseline. Each watcher runs alone in a child process; the figure is
that process's CPU time over the window (after its start-up scan) divided by the window.

    .venv/bin/python benchmarks/discovery_idle.py                 # targets: events <= 0.5 %, poll (10 s) <= 5 %
    .venv/bin/python benchmarks/discovery_idle.py --small --seconds 20
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from discovery_tree import cpu_seconds, folder_config, make_tree, quiet_logs


def child(kind: str, tree: Path, seconds: float, interval: float) -> None:
    quiet_logs()
    if kind in ("events", "poll"):
        from deepva_watch.ledger import SqliteLedger
        from deepva_watch.flow import SystemClock
        from deepva_watch.watch.supervisor import FolderWatch

        ledger_path = Path(tempfile.mkdtemp()) / "l.sqlite3"
        folder = folder_config(tree, ledger_path, watch=kind, poll_interval_seconds=interval)
        watch = FolderWatch(folder, SqliteLedger(ledger_path), SystemClock(), lambda: None)
        watch.start()
        watch.scanned.wait(600)
        ticker_stop = time.monotonic() + seconds
        started_cpu, started = cpu_seconds(), time.monotonic()
        while time.monotonic() < ticker_stop:  # what the daemon's main loop does
            time.sleep(0.5)
            watch.tick()
        used = cpu_seconds() - started_cpu
        watch.stop()
    else:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers.polling import PollingObserver

        observer = PollingObserver(timeout=interval)
        observer.schedule(FileSystemEventHandler(), str(tree), recursive=True)
        observer.start()
        time.sleep(1.0)
        started_cpu, started = cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        used = cpu_seconds() - started_cpu
        observer.stop()
    print(json.dumps({"cpu_percent": 100 * used / (time.monotonic() - started)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true", help="10,000 files instead of 100,000")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--child", default=None)
    parser.add_argument("--tree", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.tree, args.seconds, args.interval)
        return
    per_folder = 100 if args.small else 1000
    tree = args.tree or Path(tempfile.gettempdir()) / f"deepva-discovery-tree-100x{per_folder}"
    make_tree(tree, 100, per_folder)
    print(f"{100 * per_folder} files, {args.seconds:.0f} s window, poll interval {args.interval:g} s", flush=True)
    for kind, label in [("events", "ours, events"), ("poll", f"ours, polling every {args.interval:g} s"),
                        ("watchdog", f"watchdog PollingObserver every {args.interval:g} s (baseline)")]:
        out = subprocess.run([sys.executable, __file__, "--child", kind, "--tree", str(tree), "--seconds",
                              str(args.seconds), "--interval", str(args.interval)], capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-2000:])
            raise SystemExit(1)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{label:50} {result['cpu_percent']:6.2f} % of one core", flush=True)
    print("targets: events <= 0.5 %, polling every 10 s <= 5 %")


if __name__ == "__main__":
    main()
