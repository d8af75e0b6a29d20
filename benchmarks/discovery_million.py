"""A share of a million files with ``existing: skip``: the daemon as a real process, polling, against `find`.

The tree (``--folders`` x ``--files-per-folder`` files of a few bytes, under ``$TMPDIR``, reused between runs) is
watched with ``watch: poll`` and ``existing: skip``, so the first scan records every file ``skipped`` without reading
it. The daemon and the emulator run as separate processes; the daemon logs at debug level so that each poll's
``scanned`` line (with its ``ms``: scan and diff) is in its log. Figures:

  ready                 daemon started -> its first scan recorded (the ``scanned`` line of the start scan, logged
                        after every row is committed and the folder is marked seen), and the rows counted after
  peak RSS              VmHWM of the daemon plus its children (the publishing process, multiprocessing's tracker),
                        read at the end of the start, after the polls, and after a restart
  poll cycle            the ``ms`` of each poll's ``scanned`` line, against `find ROOT -printf '%s %T@\\n'` over the
                        same tree, timed before the daemon starts and after it stops (the baseline)
  drop                  one real image copied in: until its row appears, and until it is ``published``, against
                        poll interval + settle_seconds
  ledger                its files' size per skipped file
  restart               the daemon started again on that ledger: until its reconcile with a million rows is done,
                        its peak RSS, and that nothing new was recorded

    .venv/bin/python benchmarks/discovery_million.py                  # 10,000 x 100 files
    .venv/bin/python benchmarks/discovery_million.py --folders 100    # 10,000 files, for a quick look
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import (FIXTURES, Process, count_states, machine_speed_ms, report, scratch_dir, start_daemon,
                    start_emulator, wait_until)
from discovery_tree import make_tree

SETTLE_SECONDS = 1


def config_text(run: Path, api_url: str, tree: Path, poll_interval: float) -> str:
    return f"""api:
  url: {api_url}
  key_file: {run / 'api-key'}
ledger: {run / 'ledger.sqlite3'}
poll_interval_seconds: 0.5
folders:
  - path: {tree}
    watch: poll
    existing: skip
    poll_interval_seconds: {poll_interval}
    rescan_interval_seconds: 86400
    settle_seconds: {SETTLE_SECONDS}
    modules:
      face_recognition: {{}}
"""


def find_seconds(tree: Path) -> tuple[float, float]:
    """Wall and CPU seconds of `find` over the tree."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    subprocess.run(["find", str(tree), "-printf", "%s %T@\n"], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def log_lines(run: Path, event: str) -> list[dict]:
    """The daemon's log lines of one event, oldest first."""
    text = (run / "daemon.log").read_text(errors="replace")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{") and f'"event": "{event}"' in line]


def scans(run: Path, why: str) -> list[dict]:
    return [line for line in log_lines(run, "scanned") if line.get("why") == why]


def rows_of(ledger: Path, relpath: str) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=30)
    try:
        return [state for (state,) in conn.execute("SELECT state FROM assets WHERE relpath = ? ORDER BY id", (relpath,))]
    finally:
        conn.close()


def wait_for_start_scan(run: Path, daemon: Process, timeout: float) -> tuple[float, dict]:
    started = time.monotonic()
    lines = wait_until(lambda: daemon.popen.poll() is None and [
        line for line in log_lines(run, "scanned") if "start" in line.get("why", "")], timeout, interval=0.05)
    if not lines:
        raise SystemExit(f"no first scan within {timeout:.0f} s; see {run / 'daemon.log'}")
    return time.monotonic() - started, lines[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folders", type=int, default=10_000)
    parser.add_argument("--files-per-folder", type=int, default=100)
    parser.add_argument("--poll-interval", type=float, default=5.0, help="the folder's poll_interval_seconds")
    parser.add_argument("--polls", type=int, default=5, help="poll cycles measured before the drop")
    parser.add_argument("--tree", type=Path, default=None, help="where the tree is kept (reused between runs)")
    args = parser.parse_args()
    files = args.folders * args.files_per_folder
    tree = args.tree or Path(tempfile.gettempdir()) / f"deepva-million-tree-{args.folders}x{args.files_per_folder}"
    print(f"building / reusing {args.folders} x {args.files_per_folder} files in {tree} ...", flush=True)
    make_tree(tree, args.folders, args.files_per_folder)
    for leftover in tree.glob("dropped*"):  # an earlier run's drop and its sidecars
        leftover.unlink()
    find_seconds(tree)  # warm the dentry and inode caches for everyone
    speed_before = machine_speed_ms()
    finds = [find_seconds(tree) for _ in range(3)]

    run = Path(tempfile.mkdtemp(prefix="deepva-million-"))
    storage = scratch_dir("deepva-million-storage-")
    ledger = run / "ledger.sqlite3"
    emulator, api_url = start_emulator(run, 0.0, data_dir=storage)
    config = config_text(run, api_url, tree, args.poll_interval)
    timeout = 600 + files / 1000
    try:
        daemon = start_daemon(run, config, log_level="debug")
        try:
            ready, start_line = wait_for_start_scan(run, daemon, timeout)
            start_peak = daemon.peak_rss_mb()
            counts = count_states(ledger)
            polls = wait_until(lambda: scans(run, "poll")[:args.polls] if len(scans(run, "poll")) >= args.polls
                               else None, args.polls * (args.poll_interval + 60) + 60)
            if not polls:
                raise SystemExit(f"fewer than {args.polls} polls; see {run / 'daemon.log'}")
            poll_peak = daemon.peak_rss_mb()
            shutil.copy(FIXTURES / "sample.jpg", tree / "dropped.jpg")
            dropped = time.monotonic()
            wait_until(lambda: rows_of(ledger, "dropped.jpg"), 120, interval=0.02)
            seen_after = time.monotonic() - dropped
            published = wait_until(lambda: rows_of(ledger, "dropped.jpg") == ["published"], 120, interval=0.05)
            published_after = time.monotonic() - dropped
            after_drop = scans(run, "poll")
            final_peak = daemon.peak_rss_mb()
        finally:
            daemon.stop()
        ledger_bytes = sum(path.stat().st_size for path in run.glob("ledger.sqlite3*"))
        finds += [find_seconds(tree) for _ in range(3)]

        again = start_daemon(run, config, log_level="debug")  # the log starts afresh
        try:
            restart_ready, restart_line = wait_for_start_scan(run, again, timeout)
            restart_peak = again.peak_rss_mb()
        finally:
            again.stop()
        counts_after = count_states(ledger)
    finally:
        emulator.stop()
        for leftover in tree.glob("dropped*"):
            leftover.unlink()
        shutil.rmtree(storage, ignore_errors=True)

    speed_after = machine_speed_ms()
    skipped = counts.get("skipped", 0)
    cycles = [line["ms"] / 1000 for line in after_drop]
    cycles_cpu = [line["cpu_ms"] / 1000 for line in after_drop]
    find_median, find_best = statistics.median(wall for wall, _ in finds), min(wall for wall, _ in finds)
    find_cpu = statistics.median(cpu for _, cpu in finds)
    cycle_median = statistics.median(cycles)
    budget = args.poll_interval + SETTLE_SECONDS
    report(f"{files:,} files in {args.folders:,} folders, existing: skip, watch: poll every {args.poll_interval:g} s, "
           f"settle_seconds {SETTLE_SECONDS}", [
        ("ready (first scan recorded)", f"{ready:.1f} s after the daemon started (its scan and records: "
                                        f"{start_line['ms'] / 1000:.1f} s); rows: {counts}  (target <= 30 s)"),
        ("peak RSS during the start", f"{start_peak:.0f} MB (daemon and children)  (target <= 500 MB)"),
        ("poll cycle (scan + diff)", f"median {cycle_median:.2f} s, min {min(cycles):.2f}, max {max(cycles):.2f} over "
                                     f"{len(cycles)} polls = {cycle_median / find_median:.2f}x find (median), "
                                     f"{min(cycles) / find_best:.2f}x (best against best)  (target <= 2x); each: "
                                     f"{', '.join(f'{cycle:.2f}' for cycle in cycles)} s"),
        ("poll cycle, CPU", f"median {statistics.median(cycles_cpu):.2f} s of the watch thread = "
                            f"{statistics.median(cycles_cpu) / find_cpu:.2f}x find's CPU ({find_cpu:.2f} s)"),
        ("find (baseline)", f"`find ROOT -printf '%s %T@\\n' > /dev/null`: median {find_median:.2f} s, best "
                            f"{find_best:.2f} s; each: {', '.join(f'{wall:.2f}' for wall, _ in finds)} s (3 runs "
                            f"before the daemon, 3 after)"),
        ("machine speed (baseline)", f"{speed_before:.0f} ms before, {speed_after:.0f} ms after (common.machine_speed_ms; "
                                     f"about 150 on a quiet host)"),
        ("peak RSS after the polls", f"{poll_peak:.0f} MB; after the drop {final_peak:.0f} MB"),
        ("dropped image", f"row after {seen_after:.2f} s, published after {published_after:.2f} s "
                          f"({'published' if published else 'NOT PUBLISHED'}); poll interval + settle = {budget:g} s, "
                          f"+ one cycle = {budget + cycle_median:.1f} s"),
        ("ledger", f"{ledger_bytes / 1e6:.0f} MB = {ledger_bytes / max(1, skipped):.0f} bytes per skipped file "
                   f"({skipped:,} skipped)"),
        ("restart on that ledger", f"reconciled after {restart_ready:.1f} s (scan and compare "
                                   f"{restart_line['ms'] / 1000:.1f} s), peak RSS {restart_peak:.0f} MB; rows after: "
                                   f"{counts_after}"),
    ])
    shutil.rmtree(run, ignore_errors=True)
    print(f"(the tree stays in {tree} for the next run)")


if __name__ == "__main__":
    main()
