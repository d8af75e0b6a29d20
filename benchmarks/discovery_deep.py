"""A tree of 10,000 folders in event mode: how long until the watches are up, idle CPU, and whether a file dropped
into the deepest folder is seen. Baseline in the same run: watchdog's inotify observer with its default event mask
on the same tree (which, from about 4,500 folders, overflows the kernel queue with its own start-up walk).

    .venv/bin/python benchmarks/discovery_deep.py               # 10,000 folders, 30 s idle window
    .venv/bin/python benchmarks/discovery_deep.py --folders 2000 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from discovery_tree import cpu_seconds, folder_config, quiet_logs


def make_deep_tree(root: Path, folders: int) -> Path:
    """``folders`` folders: a wide part (100 per parent, files in none) and a chain 40 levels deep."""
    marker = root / f".deep-{folders}"
    if marker.exists():
        return root
    made = 0
    chain = root
    for level in range(40):
        chain = chain / f"level{level:02}"
        chain.mkdir(parents=True, exist_ok=True)
        made += 1
    parent = 0
    while made < folders:
        top = root / f"group{parent:03}"
        top.mkdir(exist_ok=True)
        made += 1
        for index in range(min(99, folders - made)):
            (top / f"sub{index:02}").mkdir(exist_ok=True)
            made += 1
        parent += 1
    marker.write_text("")
    return root


def deepest(root: Path) -> Path:
    path = root
    for level in range(40):
        path = path / f"level{level:02}"
    return path


def child_ours(tree: Path, seconds: float) -> dict:
    quiet_logs()
    from deepva_watch.ledger import SqliteLedger
    from deepva_watch.flow import SystemClock
    from deepva_watch.watch.limits import process_watches
    from deepva_watch.watch.supervisor import FolderWatch

    ledger_path = Path(tempfile.mkdtemp()) / "l.sqlite3"
    ledger = SqliteLedger(ledger_path)
    folder = folder_config(tree, ledger_path, watch="events")
    started = time.perf_counter()
    watch = FolderWatch(folder, ledger, SystemClock(), lambda: None)
    watch.start()
    while process_watches() == 0 and time.perf_counter() - started < 60:
        time.sleep(0.005)
    watch.scanned.wait(60)
    up = time.perf_counter() - started
    watches = process_watches()
    time.sleep(1.0)
    cpu0, t0 = cpu_seconds(), time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        time.sleep(0.5)
        watch.tick()
    idle = 100 * (cpu_seconds() - cpu0) / (time.monotonic() - t0)
    target = deepest(tree) / f"drop-{time.time_ns()}.jpg"
    dropped = time.perf_counter()
    target.write_bytes(b"x")
    relpath = target.relative_to(tree).as_posix()
    seen_after = None
    while time.perf_counter() - dropped < 10:
        if ledger.versions(str(tree), relpath):
            seen_after = time.perf_counter() - dropped
            break
        time.sleep(0.005)
    target.unlink()
    status = watch.status()
    watch.stop()
    return {"up_seconds": up, "watches": watches, "idle_cpu_percent": idle, "seen_after": seen_after,
            "overflows": status.overflows, "mode": status.mode}


def child_watchdog(tree: Path, seconds: float) -> dict:
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    overflows = []

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "overflow" in record.getMessage().lower():
                overflows.append(record)

    logging.getLogger("watchdog").addHandler(Count())
    logging.getLogger("watchdog").setLevel(logging.WARNING)
    logging.getLogger("watchdog").propagate = False
    seen: list[float] = []
    target = deepest(tree) / f"drop-{time.time_ns()}.jpg"

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event):  # type: ignore[no-untyped-def]
            if str(target) in str(event.src_path):
                seen.append(time.perf_counter())

    started = time.perf_counter()
    observer = Observer()
    observer.schedule(Handler(), str(tree), recursive=True)
    observer.start()
    up = time.perf_counter() - started
    cpu0, t0 = cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    idle = 100 * (cpu_seconds() - cpu0) / (time.monotonic() - t0)
    dropped = time.perf_counter()
    target.write_bytes(b"x")
    time.sleep(5)
    target.unlink()
    observer.stop()
    return {"up_seconds": up, "idle_cpu_percent": idle, "seen_after": (seen[0] - dropped) if seen else None,
            "overflows": len(overflows)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folders", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--child", default=None)
    parser.add_argument("--tree", type=Path, default=None)
    args = parser.parse_args()
    if args.child:
        run = child_ours if args.child == "ours" else child_watchdog
        print(json.dumps(run(args.tree, args.seconds)))
        return
    tree = args.tree or Path(tempfile.gettempdir()) / f"deepva-discovery-deep-{args.folders}"
    make_deep_tree(tree, args.folders)
    print(f"{args.folders} folders (deepest 40 levels down), idle window {args.seconds:g} s", flush=True)
    for kind, label in [("ours", "ours (narrow event mask)"), ("watchdog", "watchdog Observer, default mask (baseline)")]:
        out = subprocess.run([sys.executable, __file__, "--child", kind, "--tree", str(tree), "--seconds",
                              str(args.seconds)], capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            print(out.stderr[-2000:])
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        seen = f"{r['seen_after'] * 1000:.0f} ms" if r["seen_after"] is not None else "NOT SEEN"
        extra = f", {r['watches']} watches, mode {r['mode']}" if "watches" in r else ""
        print(f"{label:45} up in {r['up_seconds']:.2f} s{extra}; idle CPU {r['idle_cpu_percent']:.2f} %; "
              f"deepest drop seen after {seen}; overflows {r['overflows']}", flush=True)
    print("targets: watches up <= 1 s, idle CPU <= 0.5 %, the deepest drop seen")


if __name__ == "__main__":
    main()
