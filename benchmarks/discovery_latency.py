"""Detection latency: from a writer's close() to the ledger marking the file ready (``settled``), settle_seconds 0.

The watch and the settle stage run as in the daemon (the watch wakes the settle runner on a sighting). Files are
written one at a time at random moments, so polling latency spreads over the interval as it would in real use.

    .venv/bin/python benchmarks/discovery_latency.py                     # 100 files events, 30 files poll (1 s)
    .venv/bin/python benchmarks/discovery_latency.py --files 20 --poll-interval 0.5
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from discovery_tree import percentile, quiet_logs


def measure(mode: str, files: int, interval: float) -> list[float]:
    from deepva_watch.config import parse_config
    from deepva_watch.ledger import SqliteLedger
    from deepva_watch.flow import Services, SystemClock
    from deepva_watch.flow.runner import StageRunner
    from deepva_watch.stages import STAGES
    from deepva_watch.watch.supervisor import FolderWatch

    run = Path(tempfile.mkdtemp())
    root = run / "watch"
    root.mkdir()
    config = parse_config({"ledger": str(run / "l.sqlite3"), "folders": [
        {"path": str(root), "modules": {"m": {}}, "settle_seconds": 0, "watch": mode, "poll_interval_seconds": interval}]})
    ledger = SqliteLedger(config.ledger)
    services = Services(config, ledger, None, SystemClock())  # type: ignore[arg-type]  # settle calls no API
    stop = threading.Event()
    settle = next(stage for stage in STAGES if stage.name == "settle")
    runner = StageRunner(settle, services, stop, lambda state, due_at: None)
    threading.Thread(target=runner.run_forever, daemon=True).start()
    watch = FolderWatch(config.folders[0], ledger, SystemClock(), runner.wakeup.set)
    watch.start()
    watch.scanned.wait(30)
    reader = sqlite3.connect(config.ledger, timeout=30)
    latencies = []
    rng = random.Random(7)
    for index in range(files):
        time.sleep(rng.uniform(0.05, interval if mode == "poll" else 0.2))
        name = f"clip{index:04}.jpg"
        with open(root / name, "wb") as stream:
            stream.write(b"x" * 4096)
        closed = time.perf_counter()
        while True:
            row = reader.execute("SELECT state FROM assets WHERE relpath = ?", (name,)).fetchone()
            if row is not None and row[0] != "settling":
                latencies.append(time.perf_counter() - closed)
                break
            if time.perf_counter() - closed > interval + 30:
                raise SystemExit(f"{name} never became ready")
            time.sleep(0.002)
    stop.set()
    runner.wakeup.set()
    watch.stop()
    return latencies


def watchdog_baseline(polling: bool, files: int, interval: float) -> list[float]:
    """Close to handler call in watchdog alone (no stat, no ledger): what any watchdog-based tool starts from."""
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer
    from watchdog.observers.polling import PollingObserver

    root = Path(tempfile.mkdtemp())
    arrived: dict[str, float] = {}

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event):  # type: ignore[no-untyped-def]
            if event.event_type in ("closed", "created") and not event.is_directory:
                arrived.setdefault(Path(str(event.src_path)).name, time.perf_counter())

    observer = PollingObserver(timeout=interval) if polling else Observer()
    observer.schedule(Handler(), str(root), recursive=True)
    observer.start()
    rng = random.Random(7)
    latencies = []
    for index in range(files):
        time.sleep(rng.uniform(0.05, interval if polling else 0.2))
        name = f"clip{index:04}.jpg"
        with open(root / name, "wb") as stream:
            stream.write(b"x" * 4096)
        closed = time.perf_counter()
        while name not in arrived and time.perf_counter() - closed < interval + 30:
            time.sleep(0.002)
        latencies.append(arrived[name] - closed)
    observer.stop()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--poll-files", type=int, default=30)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    args = parser.parse_args()
    quiet_logs()
    for mode, files in (("events", args.files), ("poll", args.poll_files)):
        latencies = measure(mode, files, args.poll_interval)
        extra = f" (interval {args.poll_interval:g} s; target p95 <= {args.poll_interval * 1000 + 250:.0f} ms)" \
            if mode == "poll" else " (target p95 <= 250 ms)"
        print(f"{mode:7} {len(latencies)} files: p50 {percentile(latencies, 0.5) * 1000:7.1f} ms, "
              f"p95 {percentile(latencies, 0.95) * 1000:7.1f} ms, max {max(latencies) * 1000:7.1f} ms{extra}", flush=True)
    for label, polling, files in (("watchdog Observer, close -> handler (baseline)", False, args.files),
                                  (f"watchdog PollingObserver {args.poll_interval:g} s, write -> handler (baseline)",
                                   True, args.poll_files)):
        latencies = watchdog_baseline(polling, files, args.poll_interval)
        print(f"{label}: p50 {percentile(latencies, 0.5) * 1000:7.1f} ms, p95 {percentile(latencies, 0.95) * 1000:7.1f} ms",
              flush=True)


if __name__ == "__main__":
    main()
