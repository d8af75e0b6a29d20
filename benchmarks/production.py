"""A production-like backlog: DeepVA taking seconds per image and about real time per video, the daemon's default limits.

``backlog.py`` measures throughput with no processing time at DeepVA; in production the time goes to DeepVA, and what
matters is that the daemon keeps its job quota full with few requests. Here the emulator takes ``--image-seconds`` per
image and a video's duration per video (``--video-processing-ratio 1``), and the daemon runs with its defaults
(``max_active_jobs: 20``, ``max_uploads: 2``, ``poll_interval_seconds: 5``, ``max_requests_per_minute: 120``).

Workload: ``--images`` JPEGs (copies of the fixtures under new names) and ``--videos`` MP4s of ``--video-seconds``
(64×36 at 2 fps, made with ffmpeg once per run), interleaved evenly by name, written next door and renamed into the
watched folder at once (the drop). Emulator and daemon run as processes; the daemon from ``--daemon-root`` (its
``.venv`` if it has one), the emulator always from this repository.

Figures:

* **Quota utilisation.** The emulator's stats are sampled every ``--sample-interval`` seconds; active jobs are those
  ``waiting`` or ``processing`` there (created and not yet ended, what DeepVA's quota counts). The backlog starts at the
  drop (just before the first rename) and ends at the first sample in which the emulator has created as many jobs as
  files were dropped (every file has its job). Utilisation: the slots of the quota in use over the backlog, i.e. the
  mean of active jobs over ``max_active_jobs``, each sample standing for the time until the next (target ≥ 95 %).
  Also: the ramp-up (drop until the quota is first full, part of the backlog), the utilisation after it, and the
  stricter share of time in which every slot was in use at once.
* **Requests per job**: every API request the emulator counted (it never counts ``/_emulator/*``), by the time the last
  file is published, over the jobs it created.
* **Wall time** from the drop until the ledger shows every file published, against the ideal: the sum of the
  processing times over ``max_active_jobs``. Perfect packing is out of reach when a long video starts late, so two
  baselines are printed too: a daemon that creates a job the instant a slot frees, taking files in the drop order, or
  longest first. The peak of active jobs (the emulator's count at each creation, and the sampled one) must not exceed
  ``max_active_jobs``.
* **The daemon's peak RSS and CPU seconds**, from /proc of it and the processes it started.

    .venv/bin/python benchmarks/production.py                                 # 150 images × 3 s, 12 videos × 60 s
    .venv/bin/python benchmarks/production.py --quick                         # 40 images, 4 videos of 20 s
    .venv/bin/python benchmarks/production.py --daemon-root /tmp/older-tree   # an older daemon, same emulator

``--trace FILE`` writes the samples as CSV (seconds since the drop, active jobs, jobs created).

The ledger: ``--ledger sqlite`` (the default: one daemon, a SQLite file) or ``--ledger postgres`` (a throwaway
PostgreSQL server, ``pgcluster.py``), where ``--nodes N`` daemons share the folder as nodes of one ledger, the quota
and the request budget being global. Each run ends with one ``compare:`` line (ledger, nodes, utilisation, requests
per job, wall time), so that runs on the two ledgers can be set side by side:

    .venv/bin/python benchmarks/production.py                                 # SQLite, one node
    .venv/bin/python benchmarks/production.py --ledger postgres               # PostgreSQL, one node
    .venv/bin/python benchmarks/production.py --ledger postgres --nodes 2     # PostgreSQL, two nodes
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from common import FIXTURES, KEY, ROOT, Process, count_states, emulator_stats, make_test_video, report, scratch_dir
from pgcluster import throwaway_cluster

MAX_ACTIVE_JOBS = 20
"""The daemon's default, which the config leaves alone; the figures are measured against it."""
FINAL_STATES = {"published", "rejected", "failed", "gone", "job_failed"}
IMAGE_SOURCES = ("sample.jpg", "portrait.jpg")
VIDEO_SIZE = "64x36"
VIDEO_FPS = 2


@dataclass(frozen=True)
class Workload:
    """What is dropped: images processed for ``image_seconds`` each, videos of ``video_seconds`` (real time)."""

    images: int
    videos: int
    image_seconds: float
    video_seconds: float

    @property
    def files(self) -> int:
        return self.images + self.videos


@dataclass(frozen=True)
class Sample:
    """One look at the emulator's stats."""

    at: float
    """Seconds since the drop."""
    active: int
    created: int


def make_video(folder: Path, seconds: float) -> tuple[Path, float]:
    """A tiny MP4 of ``seconds`` and its duration as ffprobe reads it (what the processing time follows)."""
    if not shutil.which("ffmpeg") or not shutil.which("ffprobe"):
        raise SystemExit("this benchmark makes its videos with ffmpeg; install ffmpeg (ffprobe comes with it)")
    path = make_test_video(folder / "video.mp4", size=VIDEO_SIZE, rate=VIDEO_FPS, seconds=seconds)
    probed = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", str(path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return path, float(probed.stdout.strip())


def stage(run: Path, workload: Workload, video: Path) -> list[Path]:
    """Writes the files next door, videos spread evenly among the images in name order; returns them in that order."""
    staging = run / "staging"
    staging.mkdir()
    total = workload.files
    video_slots = {int((index + 0.5) * total / workload.videos) for index in range(workload.videos)}
    staged: list[Path] = []
    image_index = 0
    for index in range(total):
        if index in video_slots:
            target = staging / f"m{index:05d}.mp4"
            shutil.copyfile(video, target)
        else:
            target = staging / f"m{index:05d}.jpg"
            shutil.copyfile(FIXTURES / IMAGE_SOURCES[image_index % len(IMAGE_SOURCES)], target)
            image_index += 1
        staged.append(target)
    return staged


def start_emulator(run: Path, storage: Path, image_seconds: float) -> tuple[Process, str]:
    """This repository's emulator (it has ``--video-processing-ratio``), whichever daemon is measured."""
    key_file = run / "api-key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    log = open(run / "emulator.log", "w")
    popen = subprocess.Popen(
        [sys.executable, "-m", "deepva_watch.emulator", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(storage), "--key-file", str(key_file), "--processing-time", str(image_seconds),
         "--video-processing-ratio", "1"],
        stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    line = popen.stdout.readline() if popen.stdout else ""
    match = re.search(r"(http://\S+/api/v1)", line)
    if not match:
        raise SystemExit(f"the emulator did not start; see {run / 'emulator.log'}")
    return Process(popen), match.group(1)


def config_text(run: Path, api_url: str, watch: Path, ledger: Path | str, node: str | None = None) -> str:
    """Only what the daemon needs to run: every limit stays at its default. ``node``: its name on a PostgreSQL
    ledger, where the folder is named by an ``id`` shared by the nodes."""
    node_lines = f"node_name: {node}\n" if node else ""
    folder_id = "\n    id: watch" if node else ""
    return f"""api:
  url: {api_url}
  key_file: {run / 'api-key'}
ledger: {ledger}
{node_lines}folders:
  - path: {watch}{folder_id}
    settle_seconds: 1
    modules:
      face_recognition: {{}}
      object_scene_recognition: {{}}
"""


def daemon_command(daemon_root: Path) -> tuple[list[str], dict[str, str]]:
    """The daemon from ``daemon_root``: its own interpreter when it has a .venv, and its code first on the path."""
    venv_python = daemon_root / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    return [python, "-m", "deepva_watch"], {**os.environ, "PYTHONPATH": str(daemon_root)}


def daemon_code(daemon_root: Path, run: Path) -> str:
    """Where the daemon's interpreter finds ``deepva_watch``: printed, so that a run says which tree it measured."""
    command, env = daemon_command(daemon_root)
    found = subprocess.run(
        [command[0], "-c", "import deepva_watch; print(deepva_watch.__file__)"],
        capture_output=True, text=True, env=env, cwd=run, check=True,
    )  # fmt: skip
    return f"{Path(found.stdout.strip()).parent} (python {command[0]})"


def start_daemon(daemon_root: Path, run: Path, config: str, name: str = "daemon") -> Process:
    path = run / f"{'config' if name == 'daemon' else name}.yaml"
    path.write_text(config)
    path.chmod(0o600)
    command, env = daemon_command(daemon_root)
    log = open(run / f"{name}.log", "w")
    popen = subprocess.Popen([*command, "run", "-c", str(path)], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=run)
    return Process(popen)


def drain(api_url: str, ledger: Path | str, files: int, interval: float, timeout: float, dropped_at: float,
          daemons: list[Process]) -> tuple[list[Sample], float | None, dict[str, int]]:
    """Samples the emulator until every file is in a final state: the samples, the time the last file was published
    (None if not all were) and the ledger's states at the end."""
    samples: list[Sample] = []
    states: dict[str, int] = {}
    tick = dropped_at
    while time.monotonic() - dropped_at < timeout and all(daemon.popen.poll() is None for daemon in daemons):
        asked = time.monotonic()
        try:
            stats = emulator_stats(api_url)
        except (OSError, urllib.error.URLError):
            stats = None
        if stats is not None:
            by_state = stats["jobs_by_state"]
            at = (asked + time.monotonic()) / 2 - dropped_at
            samples.append(Sample(at, by_state.get("waiting", 0) + by_state.get("processing", 0), stats["jobs_created"]))
        states = count_states(ledger)
        if sum(count for state, count in states.items() if state in FINAL_STATES) >= files:
            done = time.monotonic() - dropped_at
            return samples, done if states.get("published", 0) >= files else None, states
        tick += interval
        time.sleep(max(0.0, tick - time.monotonic()))
    return samples, None, states


@dataclass(frozen=True)
class Utilisation:
    backlog: float | None
    """Seconds from the drop until every file had its job; None if that never happened."""
    full: float
    """Share of the backlog with the quota full."""
    ramp_up: float | None
    """Seconds from the drop until the quota was first full."""
    after_ramp_up: float | None
    mean_active: float
    mean_after_ramp_up: float | None


def utilisation(samples: list[Sample], files: int, limit: int) -> Utilisation:
    """The figures of the docstring's first item; each sample holds until the next, the drop is time 0."""
    end = next((sample.at for sample in samples if sample.created >= files), None)
    horizon = end if end is not None else (samples[-1].at if samples else 0.0)
    ramp_up = next((sample.at for sample in samples if sample.active >= limit and sample.at <= horizon), None)
    full = full_after = weighted = weighted_after = 0.0
    for sample, following in zip(samples, samples[1:], strict=False):
        if sample.at >= horizon:
            break
        span = min(following.at, horizon) - sample.at
        weighted += sample.active * span
        if ramp_up is not None and sample.at >= ramp_up:
            weighted_after += sample.active * span
        if sample.active >= limit:
            full += span
            if ramp_up is not None and sample.at >= ramp_up:
                full_after += span
    ramped = horizon - ramp_up if ramp_up is not None and horizon > ramp_up else None
    return Utilisation(end, full / horizon if horizon > 0 else 0.0, ramp_up,
                       full_after / ramped if ramped else None, weighted / horizon if horizon > 0 else 0.0,
                       weighted_after / ramped if ramped else None)  # fmt: skip


def makespan(durations: list[float], slots: int) -> float:
    """Drop until the last job ends for a daemon that fills every free slot at once, taking jobs in this order: a
    baseline for the wall time, since the ideal (perfect packing) is out of reach when a long video comes late."""
    ends = [0.0] * slots
    for duration in durations:
        heapq.heappush(ends, heapq.heappop(ends) + duration)
    return max(ends)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--daemon-root", type=Path, default=ROOT, metavar="PATH",
                        help="the source tree whose daemon is measured (default: this repository)")  # fmt: skip
    parser.add_argument("--images", type=int, help="images dropped (default 150; --quick: 40)")
    parser.add_argument("--videos", type=int, help="videos dropped (default 12; --quick: 4)")
    parser.add_argument("--image-seconds", type=float, help="processing time per image (default 3)")
    parser.add_argument("--video-seconds", type=float, help="duration of each video (default 60; --quick: 20)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 40 images, 4 videos of 20 s")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (config, logs, ledger)")
    parser.add_argument("--sample-interval", type=float, default=0.1, help="seconds between samples (default 0.1)")
    parser.add_argument("--trace", type=Path, metavar="CSV",
                        help="write the samples here (seconds since the drop, active jobs, jobs created)")
    parser.add_argument("--ledger", choices=("sqlite", "postgres"), default="sqlite",
                        help="a SQLite file, or a throwaway PostgreSQL server (default: %(default)s)")
    parser.add_argument("--nodes", type=int, default=1, help="daemons sharing the folder (PostgreSQL only above 1)")
    args = parser.parse_args()
    if args.nodes < 1 or (args.nodes > 1 and args.ledger != "postgres"):
        parser.error("--nodes above 1 needs --ledger postgres (a SQLite ledger has one daemon)")
    quick = args.quick
    workload = Workload(
        images=args.images if args.images is not None else (40 if quick else 150),
        videos=args.videos if args.videos is not None else (4 if quick else 12),
        image_seconds=args.image_seconds if args.image_seconds is not None else 3.0,
        video_seconds=args.video_seconds if args.video_seconds is not None else (20.0 if quick else 60.0),
    )
    daemon_root = args.daemon_root.resolve()
    if workload.files < 1 or workload.videos < 0 or workload.images < 0:
        parser.error("--images and --videos must not be negative, and at least one file is needed")

    run = Path(tempfile.mkdtemp(prefix="deepva-production-"))
    storage = scratch_dir("deepva-production-storage-")
    watch = run / "watch"
    watch.mkdir()
    keep = False
    server = contextlib.ExitStack()
    try:
        ledger: Path | str = run / "ledger.sqlite3"
        if args.ledger == "postgres":
            cluster = server.enter_context(throwaway_cluster())
            ledger = cluster.url(cluster.create_database("production", owner="postgres"))
        video, video_duration = make_video(run, workload.video_seconds) if workload.videos else (run, 0.0)
        work = workload.images * workload.image_seconds + workload.videos * video_duration
        ideal = work / MAX_ACTIVE_JOBS
        staged = stage(run, workload, video)
        durations = [video_duration if path.suffix == ".mp4" else workload.image_seconds for path in staged]
        best_in_order = makespan(durations, MAX_ACTIVE_JOBS)
        longest_first = makespan(sorted(durations, reverse=True), MAX_ACTIVE_JOBS)
        code = daemon_code(daemon_root, run)
        emulator, api_url = start_emulator(run, storage, workload.image_seconds)
        if args.ledger == "sqlite":
            daemons = [start_daemon(daemon_root, run, config_text(run, api_url, watch, ledger))]
        else:
            daemons = [start_daemon(daemon_root, run, config_text(run, api_url, watch, ledger, f"node-{index}"),
                                    f"node-{index}") for index in range(args.nodes)]
        try:
            time.sleep(2.0)  # the daemons start and take their first look at the empty folder
            if stopped := [daemon for daemon in daemons if daemon.popen.poll() is not None]:
                keep = True
                raise SystemExit(f"a daemon exited with code {stopped[0].popen.returncode}; see the logs in {run}")
            cpu_before = sum(daemon.cpu_seconds() for daemon in daemons)
            dropped_at = time.monotonic()
            for path in staged:
                path.rename(watch / path.name)
            samples, done, states = drain(api_url, ledger, workload.files, args.sample_interval,
                                          max(300.0, 10 * ideal), dropped_at, daemons)  # fmt: skip
            keep = args.keep or not done  # a run that did not finish is worth a look
            stats = emulator_stats(api_url)
            cpu = sum(daemon.cpu_seconds() for daemon in daemons)
            rss = sum(daemon.peak_rss_mb() for daemon in daemons)
            emulator_cpu = emulator.cpu_seconds()
        finally:
            for daemon in daemons:  # all at once: a node does not see the other leave and take its rows
                if daemon.popen.poll() is None:
                    daemon.popen.terminate()
            for daemon in daemons:
                daemon.popen.wait(timeout=60)
            emulator.stop()
    except BaseException:
        keep = True
        raise
    finally:
        server.close()
        if keep:
            print(f"run folder kept: {run}", file=sys.stderr)
        else:
            shutil.rmtree(run, ignore_errors=True)
        shutil.rmtree(storage, ignore_errors=True)

    if args.trace:
        args.trace.write_text("".join(f"{s.at:.2f},{s.active},{s.created}\n" for s in samples))
    used = utilisation(samples, workload.files, MAX_ACTIVE_JOBS)
    requests = sum(stats["requests"].values())
    jobs = stats["jobs_created"]
    sampled_peak = max((sample.active for sample in samples), default=0)
    backlog = f"{used.backlog:.1f} s" if used.backlog is not None else "(not every file got its job)"
    ramp = (f"{used.ramp_up:.1f} s from the drop to {MAX_ACTIVE_JOBS} active; "
            f"{100 * (used.mean_after_ramp_up or 0) / MAX_ACTIVE_JOBS:.1f} % after it"
            if used.ramp_up is not None else "the quota was never full")  # fmt: skip
    every = (f"{100 * used.full:.1f} % of the backlog, {100 * used.after_ramp_up:.1f} % after the ramp-up"
             if used.after_ramp_up is not None else f"{100 * used.full:.1f} % of the backlog")
    wall = (f"{done:.1f} s from the drop to the last publish; ideal {ideal:.1f} s ({work:.0f} s of processing / "
            f"{MAX_ACTIVE_JOBS}); ratio {done / ideal:.2f}" if done is not None else "not every file was published")  # fmt: skip
    refills = (f"{best_in_order:.1f} s in the drop order, {longest_first:.1f} s longest first (jobs created as slots "
               f"free up, published at once)")  # fmt: skip
    nodes = f"{args.nodes} node{'s' if args.nodes > 1 else ''}"
    report(
        f"{workload.images} images × {workload.image_seconds:g} s, {workload.videos} videos × {video_duration:g} s "
        f"(real time), default limits; {args.ledger} ledger, {nodes}",
        [
            ("daemon code", code),
            ("ledger", f"{args.ledger}, {nodes}" + (" (the quota and request budget are global)"
                                                   if args.nodes > 1 else "")),
            ("all published", f"{done is not None} {states}"),
            ("quota utilisation", f"{100 * used.mean_active / MAX_ACTIVE_JOBS:.1f} % of the slots in use over the "
                                  f"backlog ({backlog}, drop to last job created; mean {used.mean_active:.1f} of "
                                  f"{MAX_ACTIVE_JOBS} active)  (target >= 95 %)"),
            ("  ramp-up", ramp),
            ("  every slot at once", every),
            ("requests per job", f"{requests / max(1, jobs):.2f} ({requests} requests, {jobs} jobs)  (target <= 4)"),
            ("  by endpoint", ", ".join(f"{route}: {count}" for route, count in sorted(stats["requests"].items()))),
            ("wall time", wall),
            ("  baseline: instant refills", refills),
            ("peak active jobs", f"{stats['peak_active_jobs']} at job creation, {sampled_peak} sampled  "
                                 f"(limit {MAX_ACTIVE_JOBS})"),
            ("daemon peak RSS", f"{rss:.0f} MB (the sum of its and its child processes' peaks"
                                f"{', over every node' if args.nodes > 1 else ''})"),
            ("daemon CPU", f"{cpu - cpu_before:.1f} s from the drop to the end, {cpu:.1f} s since its start"
                           f"{' (every node)' if args.nodes > 1 else ''}"),
            ("emulator CPU", f"{emulator_cpu:.1f} s since its start"),
        ],
    )  # fmt: skip
    print(f"compare: ledger {args.ledger}, {nodes}: quota utilisation {100 * used.mean_active / MAX_ACTIVE_JOBS:.1f} %, "
          f"requests per job {requests / max(1, jobs):.2f}, wall "
          + (f"{done:.1f} s (ratio {done / ideal:.2f})" if done is not None else "not all published")
          + f", peak active {stats['peak_active_jobs']}")


if __name__ == "__main__":
    main()
