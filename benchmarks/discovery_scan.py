"""One scan of a 100,000-file tree (100 folders): wall time and peak RSS, against `find` and watchdog's snapshot.

Each contender runs in a fresh child process, so peak RSS is its own. Figures:
  find -printf '%s %T@\\n'               the baseline (C, no filtering)
  ours: scan                              what a reconcile walks (deepva_watch.watch.discover.scan_tree)
  ours: scan + diff                       one polling cycle: scan, compared with the previous scan
  watchdog DirectorySnapshot              what PollingObserver takes each cycle
  watchdog snapshot + DirectorySnapshotDiff   one PollingObserver cycle

    .venv/bin/python benchmarks/discovery_scan.py            # 100 x 1000 files (targets: <= 2x find, <= 150 MB)
    .venv/bin/python benchmarks/discovery_scan.py --small    # 100 x 100 files
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from discovery_tree import folder_config, make_tree, peak_rss_mb


def child(kind: str, tree: Path) -> None:
    rss_before = peak_rss_mb()
    if kind == "ours-scan":
        from deepva_watch.watch.discover import scan_tree

        folder = folder_config(tree, Path(tempfile.mkdtemp()) / "l.sqlite3")
        started = time.perf_counter()
        files = len(scan_tree(folder).snapshot)
    elif kind == "ours-diff":
        from deepva_watch.watch.discover import scan_tree
        from deepva_watch.watch.snapshot import changes

        folder = folder_config(tree, Path(tempfile.mkdtemp()) / "l.sqlite3")
        previous = scan_tree(folder).snapshot
        started = time.perf_counter()
        current = scan_tree(folder).snapshot
        files = len(current) + sum(len(changed) + len(missing) for changed, missing in changes(previous, current))
    elif kind == "watchdog-snapshot":
        from watchdog.utils.dirsnapshot import DirectorySnapshot

        started = time.perf_counter()
        files = len(DirectorySnapshot(str(tree)).paths)
    elif kind == "watchdog-diff":
        from watchdog.utils.dirsnapshot import DirectorySnapshot, DirectorySnapshotDiff

        previous = DirectorySnapshot(str(tree))
        started = time.perf_counter()
        current = DirectorySnapshot(str(tree))
        DirectorySnapshotDiff(previous, current)
        files = len(current.paths)
    else:
        raise SystemExit(kind)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rss_mb": peak_rss_mb(), "rss_at_start_mb": rss_before, "files": files}))


def run_child(kind: str, tree: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--tree", str(tree)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_find(tree: Path) -> dict:
    started = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "%M", "find", str(tree), "-printf", "%s %T@\n"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    try:
        rss = int(result.stderr.strip().splitlines()[-1]) / 1024
    except (ValueError, IndexError):
        rss = float("nan")
    return {"seconds": seconds, "rss_mb": rss}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--folders", type=int, default=100)
    parser.add_argument("--files-per-folder", type=int, default=1000)
    parser.add_argument("--tree", type=Path, default=None, help="where the test tree is kept (reused between runs)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs each")
    parser.add_argument("--child", default=None)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.tree)
        return
    per_folder = 100 if args.small else args.files_per_folder
    tree = args.tree or Path(tempfile.gettempdir()) / f"deepva-discovery-tree-{args.folders}x{per_folder}"
    print(f"building / reusing {args.folders} x {per_folder} files in {tree} ...", flush=True)
    make_tree(tree, args.folders, per_folder)
    run_find(tree)  # warm the dentry and inode caches for everyone
    results = {}
    for name, run in [("find -printf '%s %T@\\n'", lambda: run_find(tree)),
                      ("ours: scan", lambda: run_child("ours-scan", tree)),
                      ("ours: scan + diff (one poll cycle)", lambda: run_child("ours-diff", tree)),
                      ("watchdog DirectorySnapshot", lambda: run_child("watchdog-snapshot", tree)),
                      ("watchdog snapshot + diff (one PollingObserver cycle)", lambda: run_child("watchdog-diff", tree))]:
        runs = [run() for _ in range(args.repeat)]
        results[name] = min(runs, key=lambda r: r["seconds"])
    base = results["find -printf '%s %T@\\n'"]["seconds"]
    print(f"\n{'contender':55} {'wall s':>8} {'x find':>7} {'peak RSS MB':>12}")
    for name, result in results.items():
        print(f"{name:55} {result['seconds']:8.3f} {result['seconds'] / base:7.2f} {result['rss_mb']:12.1f}")
    interp = results["ours: scan"].get("rss_at_start_mb")
    print(f"\n(peak RSS of a bare interpreter with deepva_watch imported: {interp:.1f} MB; files: {args.folders * per_folder})")
    print("targets: ours <= 2.0x find wall time, <= 150 MB peak RSS")


if __name__ == "__main__":
    main()
