"""A backlog dropped at once, drained end to end against the emulator.

Scenario 1 (throughput): N small images, emulator processing time 0 — files per second from the first drop to the last
publish, the daemon's CPU seconds per file and peak RSS, the ledger's size.

Scenario 2 (limits): M images, processing time 2 s, max_active_jobs 50 — the emulator's recorded peak of concurrent
jobs (must not exceed 50), total wall time against the ideal (M × 2 s / 50), and API requests per completed job.

    .venv/bin/python benchmarks/backlog.py                 # 5,000 and 1,000 files
    .venv/bin/python benchmarks/backlog.py --files 500 --limited-files 200   # quicker
    .venv/bin/python benchmarks/backlog.py --ledger postgres     # the same on a throwaway PostgreSQL server

With ``--ledger postgres`` the daemon is one node of a PostgreSQL ledger (``pgcluster.py``: a throwaway server on this
machine, durability off as in the tests), a fresh database per scenario; the figures are printed as for SQLite.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import (FIXTURES, count_states, create_cost_us, emulator_stats, machine_speed_ms, postgres_bytes, report,
                    scratch_dir, start_daemon, start_emulator, tree_cpu_seconds)
from pgcluster import Cluster, throwaway_cluster


def config_text(run: Path, api_url: str, watch: Path, *, max_active_jobs: int, poll: float,
                ledger: Path | str) -> str:
    return f"""api:
  url: {api_url}
  key_file: {run / 'api-key'}
ledger: {ledger}
max_uploads: 2
max_active_jobs: {max_active_jobs}
poll_interval_seconds: {poll}
max_requests_per_minute: 600
folders:
  - path: {watch}
    settle_seconds: 0
    watch: events
    modules:
      face_recognition: {{}}
"""


def stage(run: Path, count: int) -> Path:
    """Write the files next door, before the clock starts: what we measure begins when they appear in the folder."""
    staging = run / "staging"
    staging.mkdir()
    sample = (FIXTURES / "sample.jpg").read_bytes()
    for index in range(count):
        (staging / f"img{index:06d}.jpg").write_bytes(sample)
    return staging


def drop(staging: Path, watch: Path) -> None:
    """Rename the staged files in, all at once, as a copy tool that writes to a temporary name and renames does."""
    for path in staging.iterdir():
        path.rename(watch / path.name)


#: During a drain the machine's speed is sampled this often, each sample about 15 ms of CPU.
SPEED_SAMPLE_SECONDS = 2.0


def drain(ledger: Path | str, files: int, timeout: float) -> tuple[bool, float, float | None, list[float]]:
    """Wait until every file is published: whether they all were, the time that took, the steady rate (files per
    second between the 10th and the 90th percent published; None for runs too short to tell) and the machine's speed
    sampled along the way (``machine_speed_ms``)."""
    started = time.monotonic()
    marks: dict[float, float] = {}
    speeds: list[float] = []
    next_sample = started
    published = 0
    while published < files and time.monotonic() - started < timeout:
        time.sleep(0.1)
        if time.monotonic() >= next_sample:
            speeds.append(machine_speed_ms(rounds=1, iterations=2_000))
            next_sample += SPEED_SAMPLE_SECONDS
        published = count_states(ledger).get("published", 0)
        for share in (0.1, 0.9):
            if published >= share * files:
                marks.setdefault(share, time.monotonic())
    done = published >= files
    steady = 0.8 * files / (marks[0.9] - marks[0.1]) if len(marks) == 2 and marks[0.9] > marks[0.1] else None
    return done, time.monotonic() - started, steady, speeds


#: Run folders are removed only when every scenario is done: deleting thousands of files makes the next creations on
#: ext4 without a journal several times dearer for minutes (see ``create_cost_us``), and a scenario must not pay for
#: the one before it.
_LEFTOVERS: list[Path] = []
#: When the last run removed its folders (seconds since the epoch), so that the next run can let those deletions age.
CLEANED_STAMP = Path(tempfile.gettempdir()) / "deepva-bench-cleaned-at"
#: How old deletions must be before files created nearby cost what they do on a quiet file system: the kernel steps
#: over an inode deleted less than 60 s ago, or 360 s while its inode table block is dirty (written back after 30 s).
DELETIONS_AGE_SECONDS = 120
#: Above this (µs per small file) the run folder is in the slow state described in ``create_cost_us``.
SLOW_CREATE_US = 150
#: How often the run folder's create cost is measured again while waiting for it to leave that state.
QUIET_CHECK_SECONDS = 15


def wait_for_quiet_folder(run: Path, limit: float) -> tuple[float, float, float]:
    """Wait (up to ``limit`` seconds) until creating a file in ``run`` costs what it does on a quiet file system.

    The slow state lasts a minute or more after mass deletions nearby, on this machine's ext4 without a journal: an
    earlier run's clean-up, for one. A throughput figure taken in it says more about those deletions than about the
    daemon, which creates two files for every one it publishes. A probe of a few hundred files can land clear of the
    deleted inodes while the run's 15,000 do not, so an earlier run's clean-up is also waited out by the clock.
    Returns the first cost, the last, and the time waited."""
    started = time.monotonic()
    first = cost = create_cost_us(run)
    for probe in itertools.count(1):
        left = limit - (time.monotonic() - started)
        if left <= 0:
            break
        age = max(0.0, time.time() - _cleaned_at())
        if age < DELETIONS_AGE_SECONDS:
            print(f"  an earlier run removed its files {age:.0f} s ago; waiting until that is "
                  f"{DELETIONS_AGE_SECONDS} s", flush=True)
            time.sleep(min(DELETIONS_AGE_SECONDS - age + 1, left))
        elif cost > SLOW_CREATE_US:
            print(f"  creating a file in the run folder costs {cost:.0f} us of CPU (slow state); measuring again in "
                  f"{QUIET_CHECK_SECONDS} s", flush=True)
            time.sleep(min(QUIET_CHECK_SECONDS, left))
        else:
            break
        cost = create_cost_us(run, name=f"create-cost-{probe}")
    return first, cost, time.monotonic() - started


def _cleaned_at() -> float:
    try:
        return float(CLEANED_STAMP.read_text())
    except (OSError, ValueError):
        return 0.0


def remove_leftovers() -> None:
    for leftover in _LEFTOVERS:
        shutil.rmtree(leftover, ignore_errors=True)
    if _LEFTOVERS:
        CLEANED_STAMP.write_text(f"{time.time():.0f}")


def run_scenario(files: int, processing_time: float, max_active_jobs: int, poll: float, timeout: float,
                 quiet_wait: float = 0.0, postgres: Cluster | None = None) -> dict:
    """One drain; on a fresh database of ``postgres`` when given, else on a SQLite file in the run folder."""
    run = Path(tempfile.mkdtemp(prefix="deepva-bench-"))
    storage = scratch_dir("deepva-bench-storage-")
    _LEFTOVERS.extend((run, storage))
    watch = run / "watch"
    watch.mkdir()
    first_create_cost, create_cost, quiet_waited = wait_for_quiet_folder(run, quiet_wait)
    speed_before = machine_speed_ms()
    ledger: Path | str = run / "ledger.sqlite3"
    if postgres is not None:
        ledger = postgres.url(postgres.create_database(owner="postgres"))
    emulator, api_url = start_emulator(run, processing_time, data_dir=storage)
    daemon = start_daemon(run, config_text(run, api_url, watch, max_active_jobs=max_active_jobs, poll=poll,
                                           ledger=ledger))
    try:
        staged_at = time.monotonic()
        staging = stage(run, files)
        staging_seconds = time.monotonic() - staged_at
        time.sleep(1.5)  # let the daemon start and take its first scan of the empty folder
        cpu_before = daemon.cpu_seconds()
        server_before = tree_cpu_seconds(postgres.pid) if postgres else 0.0
        drop(staging, watch)
        done, elapsed, steady, speeds = drain(ledger, files, timeout)
        cpu = daemon.cpu_seconds() - cpu_before
        server_cpu = tree_cpu_seconds(postgres.pid) - server_before if postgres else None
        figures = {
            "files": files,
            "done": done,
            "states": count_states(ledger),
            "elapsed": elapsed,
            "steady": steady,
            "staging_seconds": staging_seconds,
            "cpu": cpu,
            "rss_mb": daemon.peak_rss_mb(),
            "emulator_cpu": emulator.cpu_seconds(),
            "server_cpu": server_cpu,
            "ledger_bytes": (postgres_bytes(ledger) if isinstance(ledger, str)
                             else sum(p.stat().st_size for p in run.glob("ledger.sqlite3*"))),
            "stats": emulator_stats(api_url),
            "create_cost_us": create_cost,
            "first_create_cost_us": first_create_cost,
            "quiet_waited": quiet_waited,
        }
    finally:
        daemon.stop()
        emulator.stop()
    figures["machine_speed_ms"] = (speed_before, statistics.median(speeds), max(speeds), machine_speed_ms())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--limited-files", type=int, default=1000)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--quiet-wait", type=float, default=300.0, metavar="SECONDS",
                        help="wait up to this long for the run folder to leave the slow-create state before the "
                             "throughput run (0: start at once and report the state)")
    parser.add_argument("--ledger", choices=("sqlite", "postgres"), default="sqlite",
                        help="a SQLite file, or a throwaway PostgreSQL server (default: %(default)s)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        postgres = stack.enter_context(throwaway_cluster()) if args.ledger == "postgres" else None
        run_all(args, postgres)


def run_all(args: argparse.Namespace, postgres: Cluster | None) -> None:
    ledger = f"; {args.ledger} ledger"
    if not args.skip_throughput:
        result = run_scenario(args.files, 0.0, max_active_jobs=200, poll=0.2, timeout=900, quiet_wait=args.quiet_wait,
                              postgres=postgres)
        requests = sum(result["stats"]["requests"].values())
        report(f"{args.files} images, processing time 0{ledger}", [
            ("all published", f"{result['done']} {result['states']}"),
            ("wall time", f"{result['elapsed']:.1f} s"),
            ("files per second", f"{args.files / result['elapsed']:.0f}  (target >= 150)"),
            ("  between 10 % and 90 %", f"{result['steady']:.0f}" if result["steady"] else "n/a"),
            ("  not counted", f"{result['staging_seconds']:.1f} s writing the files next door before the drop"),
            ("daemon CPU per file", f"{1000 * result['cpu'] / args.files:.2f} ms (with any process it starts)"),
            ("emulator CPU per file", f"{1000 * result['emulator_cpu'] / args.files:.2f} ms (same machine, 2 cores)"),
            *([("PostgreSQL CPU per file", f"{1000 * result['server_cpu'] / args.files:.2f} ms (the server and its "
                                           "backends, same machine; the benchmark's own polling included)")]
              if result["server_cpu"] is not None else []),
            ("daemon peak RSS", f"{result['rss_mb']:.0f} MB  (target <= 200; the sum of its and its children's "
                                f"peaks)"),
            ("ledger size", f"{result['ledger_bytes'] / 1e6:.1f} MB ({result['ledger_bytes'] / args.files:.0f} B/file)"
                            + (", the whole database (an empty one takes about 7.5 MB)" if postgres else "")),
            ("API requests per job", f"{requests / max(1, result['stats']['jobs_created']):.2f}"),
            ("baseline: file create", f"{result['create_cost_us']:.0f} us CPU to create, write and rename a small file "
                                      "in the run folder (about 40 on a quiet ext4; several hundred right after mass "
                                      "deletions without a journal)"),
            ("  waited for it", f"{result['quiet_waited']:.0f} s (it cost {result['first_create_cost_us']:.0f} us "
                                f"at first)"),
            ("baseline: machine speed", "{:.0f} ms before, {:.0f} during (median; slowest {:.0f}), {:.0f} after: CPU "
                                        "for a fixed piece of Python work (higher: the host is busy and every figure "
                                        "above suffers)".format(*result["machine_speed_ms"])),
        ])
        if result["create_cost_us"] > SLOW_CREATE_US:
            print("  note: creating files is slow in this folder (mass deletions nearby?), and the daemon creates two per "
                  "file; the figures above are low for it. Run again later, or with TMPDIR set to a fresh folder.")

    files = args.limited_files
    if not files:
        return
    # list polling serves every due job with one request, so a short interval costs little (about 0.4 per job here)
    result = run_scenario(files, 2.0, max_active_jobs=50, poll=0.1, timeout=900, postgres=postgres)
    stats = result["stats"]
    ideal = files * 2.0 / 50
    requests = sum(stats["requests"].values())
    report(f"{files} images, processing time 2 s, max_active_jobs 50{ledger}", [
        ("all published", f"{result['done']} {result['states']}"),
        ("peak concurrent jobs (emulator)", f"{stats['peak_active_jobs']}  (limit 50)"),
        ("wall time", f"{result['elapsed']:.1f} s; ideal {ideal:.1f} s; ratio {result['elapsed'] / ideal:.2f}  (target <= 1.15)"),
        ("API requests per job", f"{requests / max(1, stats['jobs_created']):.2f}  (target <= 4)"),
        ("requests by endpoint", ", ".join(f"{k}: {v}" for k, v in sorted(stats["requests"].items()))),
    ])


if __name__ == "__main__":
    try:
        main()
    finally:
        remove_leftovers()
