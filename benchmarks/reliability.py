"""Reliability runs: faults, crashes, an outage and a refused key, each proven with figures.

Every scenario runs the emulator and ``deepva-watch run`` as separate processes on loopback, exactly as in production
but for the API, and judges the outcome from three independent witnesses: the ledger, the files on disk and the
emulator's own counters (which job it completed for which tag, which faults it injected, which requests it saw).

    .venv/bin/python benchmarks/reliability.py chaos                    # 300 files, 24 SIGKILLs, faults on
    .venv/bin/python benchmarks/reliability.py chaos --files 60 --kills 20 --seed 3
    .venv/bin/python benchmarks/reliability.py chaos --ledger postgres --nodes 2   # kills fall on each node in turn
    .venv/bin/python benchmarks/reliability.py outage --minutes 2       # API refuses connections for 2 minutes
    .venv/bin/python benchmarks/reliability.py refused-key              # key rotated twice: key file, then SIGHUP

Each prints a summary table and exits 1 when a check fails. The same functions run the small versions in
``tests/reliability``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from common import FIXTURES, ROOT, Process, emulator_stats, report, start_emulator, wait_until  # noqa: E402

VALID_FIXTURES = (
    "sample.jpg", "portrait.jpg", "sample.png", "sample.mp4", "ntsc.mp4", "pal50.mp4", "sample.mov", "sample.mpg",
    "sample.mxf",
)  # fmt: skip
INVALID_FIXTURES = ("empty.jpg", "text-named.jpg", "html-named.jpg")
INVALID_SHARE = 0.1
FINAL_STATES = ("published", "rejected", "failed", "gone", "superseded")
TEMP_NAME = re.compile(r"^\..*\.tmp-[0-9a-f]+$")
"""What ``deepva_watch.fsutil.temp_name_for`` produces: hidden, with the marker and a hex token."""


# -- media ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaFile:
    relpath: str
    valid: bool


def unique_copy(fixture: str, rng: random.Random) -> bytes:
    """The fixture's bytes made unique where every reader ignores them: after a JPEG's EOI or a PNG's IEND, in a
    trailing ``free`` box of an MP4/MOV, after the end of an MPEG program stream or MXF footer. Invalid fixtures stay
    as they are (an empty file must stay empty)."""
    data = (FIXTURES / fixture).read_bytes()
    if fixture in INVALID_FIXTURES:
        return data
    tail = rng.randbytes(32)
    if fixture.endswith((".mp4", ".mov")):
        tail = struct.pack(">I", 8 + len(tail)) + b"free" + tail
    return data + tail


def plan_media(count: int, rng: random.Random) -> list[tuple[MediaFile, str]]:
    """``count`` files of every type, about a tenth invalid, spread over a few sub-folders."""
    planned: list[tuple[MediaFile, str]] = []
    folders = ("", "desk-a", "desk-b/day", "desk-b/day/late")
    for index in range(count):
        invalid = rng.random() < INVALID_SHARE
        fixture = rng.choice(INVALID_FIXTURES if invalid else VALID_FIXTURES)
        folder = rng.choice(folders)
        name = f"f{index:05d}-{fixture}"
        relpath = f"{folder}/{name}" if folder else name
        planned.append((MediaFile(relpath, not invalid), fixture))
    return planned


def drop(watch: Path, staging: Path, batch: list[tuple[MediaFile, str]], rng: random.Random) -> None:
    """Most files are written next door and renamed in (as copy tools do); some are written in place, so settling has
    partial files to wait for."""
    for media, fixture in batch:
        target = watch / media.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        data = unique_copy(fixture, rng)
        if rng.random() < 0.7:
            temp = staging / target.name
            temp.write_bytes(data)
            os.replace(temp, target)
        else:
            with open(target, "wb") as stream:
                half = len(data) // 2
                stream.write(data[:half])
                stream.flush()
                stream.write(data[half:])


# -- processes --------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Rig:
    """One run: a directory, the emulator process, and the daemon processes started and killed at will.

    By default one daemon on a SQLite ledger in the run directory. With ``ledger_url`` (a PostgreSQL database) the
    daemons are ``nodes`` nodes of that ledger, ``node-0``, ``node-1``…, each with its own config and log, watching the
    same folder under one folder ``id``."""

    dir: Path
    emulator: Process
    api_url: str
    watch: Path
    key_file: Path
    ledger_url: str | None = None
    nodes: int = 1
    daemons: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: int = 0
    starts: int = 0
    metrics_port: int | None = None
    keep: bool = False
    findings: list[str] = field(default_factory=list)
    """What the rig saw go wrong while the run went on (a drain that never ended); :func:`verify` reports them."""

    @classmethod
    def create(cls, *, processing_time: float, prefix: str = "deepva-reliability-", ledger_url: str | None = None,
               nodes: int = 1) -> Rig:
        if nodes != 1 and ledger_url is None:
            raise ValueError("several nodes need a PostgreSQL ledger (ledger_url)")
        run = Path(tempfile.mkdtemp(prefix=prefix))
        emulator, api_url = start_emulator(run, processing_time)
        watch = run / "watch"
        watch.mkdir()
        (run / "staging").mkdir()
        key_file = run / "daemon-key"
        key_file.write_text((run / "api-key").read_text() + "\n")
        return cls(run, emulator, api_url, watch, key_file, ledger_url, nodes)

    @property
    def ledger(self) -> Path | str:
        """The SQLite file, or the PostgreSQL ledger's URL."""
        return self.ledger_url or self.dir / "ledger.sqlite3"

    @property
    def daemon(self) -> subprocess.Popen[bytes] | None:
        """The first node's process (the only one on SQLite)."""
        return self.daemons.get(0)

    @property
    def log(self) -> Path:
        return self.log_of(0)

    def log_of(self, node: int) -> Path:
        return self.dir / ("daemon.log" if node == 0 else f"daemon-{node}.log")

    def config_of(self, node: int) -> Path:
        return self.dir / ("config.yaml" if node == 0 else f"config-{node}.yaml")

    def node_name(self, node: int) -> str:
        return f"node-{node}"

    @property
    def control(self) -> str:
        return self.api_url.split("/api/v1")[0] + "/_emulator"

    def write_config(self, *, retries: int = 2, metrics: bool = False, api_failure_seconds: float = 300,
                     max_active_jobs: int = 20, settle: float = 0.3, clean_up: bool = False,
                     lease: float = 10) -> None:
        """Every node's config; metrics (one port) on the first node only. ``lease``: ``node_lease_seconds`` on a
        PostgreSQL ledger."""
        if metrics and self.metrics_port is None:
            self.metrics_port = free_port()
        for node in range(self.nodes):
            metrics_block = (
                f"metrics:\n  listen: 127.0.0.1:{self.metrics_port}\n  api_failure_seconds: {api_failure_seconds}\n"
                if metrics and node == 0 else ""
            )
            node_block = (f"node_name: {self.node_name(node)}\nnode_lease_seconds: {lease:g}\n"
                          if self.ledger_url else "")
            folder_id = "\n    id: shared" if self.ledger_url else ""
            self.config_of(node).write_text(self._config_text(retries, max_active_jobs, settle, clean_up,
                                                              metrics_block + node_block, folder_id))

    def _config_text(self, retries: int, max_active_jobs: int, settle: float, clean_up: bool, blocks: str,
                     folder_id: str) -> str:
        return (f"""api:
  url: {self.api_url}
  key_file: {self.key_file}
  retries: {retries}
  connect_timeout_seconds: 2
  read_timeout_seconds: 10
ledger: {self.ledger}
max_uploads: 2
max_active_jobs: {max_active_jobs}
poll_interval_seconds: 0.3
max_requests_per_minute: 6000
log_level: info
delete_storage_after_completion: {str(clean_up).lower()}
delete_job_after_publish: {str(clean_up).lower()}
{blocks}folders:
  - path: {self.watch}{folder_id}
    watch: events
    settle_seconds: {settle}
    rescan_interval_seconds: 30
    min_size: 0
    modules:
      face_recognition: {{model: celebrities}}
      object_scene_recognition: {{}}
""")

    def start_daemon(self, node: int = 0) -> None:
        running = self.daemons.get(node)
        assert running is None or running.poll() is not None, f"the daemon of node {node} is already running"
        env = {k: v for k, v in os.environ.items() if k != "DEEPVA_API_KEY"}
        with open(self.log_of(node), "ab") as log:
            self.daemons[node] = subprocess.Popen(
                [sys.executable, "-m", "deepva_watch", "run", "-c", str(self.config_of(node))],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
            )
        self.starts += 1

    def start_all(self) -> None:
        """Every node not running yet."""
        for node in range(self.nodes):
            if node not in self.daemons or self.daemons[node].poll() is not None:
                self.start_daemon(node)

    def await_health_endpoint(self) -> None:
        """Until /healthz answers; a daemon that exited instead (its metrics port taken between our pick and its bind,
        say) ends the run here with the end of its log, rather than as a puzzle several steps later."""
        if wait_until(lambda: self.healthz()[0] != 0, 20, 0.1):
            return
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise SystemExit(f"the daemon did not answer on /healthz (exit code {self.daemon.poll() if self.daemon else None}):"
                         f"\n{tail}")

    def kill_daemon(self, node: int = 0) -> None:
        daemon = self.daemons[node]
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=30)
        self.kills += 1

    def await_drain(self, expected: int, timeout: float, interval: float = 0.5) -> bool:
        """Until ``expected`` files are all final. If they are not in time, the daemon's state is kept for the verdict
        at once, while it is still in that state: a stopped daemon can no longer say where it was stuck."""
        if wait_until(lambda: all_final(self.ledger, expected), timeout, interval):
            return True
        self.findings.append(f"not every file final within {timeout:.0f} s; {self.post_mortem()}")
        return False

    def post_mortem(self) -> str:
        """Each daemon's exit code if it died, or else every thread's stack (the daemon dumps them on SIGUSR1), with
        the end of its log."""
        if not self.daemons:
            return "no daemon was started"
        told = []
        for node, daemon in sorted(self.daemons.items()):
            code = daemon.poll()
            if code is None:
                daemon.send_signal(signal.SIGUSR1)
                time.sleep(1.0)  # the dump is written by the daemon's C signal handler, at once; this is for the file
                state = "the daemon is running; its thread stacks end the log"
            else:
                state = f"the daemon exited with code {code}"
            log = self.log_of(node)
            tail = log.read_text(errors="replace")[-12000 // len(self.daemons):] if log.exists() else "(no log)"
            told.append(f"{self.node_name(node) + ': ' if self.nodes > 1 else ''}{state}:\n{tail}")
        return "\n".join(told)

    def signal_daemon(self, sig: int) -> None:
        assert self.daemon is not None and self.daemon.poll() is None
        self.daemon.send_signal(sig)

    def stop_daemon(self) -> int | None:
        """Every node stopped (SIGTERM to all at once); the first node's exit code."""
        for daemon in self.daemons.values():
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
        for daemon in self.daemons.values():
            try:
                daemon.wait(timeout=40)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(timeout=10)
        return None if self.daemon is None else self.daemon.returncode

    def close(self) -> None:
        """Stops both processes whatever happened; removes the run directory unless asked to keep it."""
        if self.keep:
            print(f"run directory kept: {self.dir}")
        try:
            self.stop_daemon()
        finally:
            try:
                self.emulator.stop(timeout=20)
            except subprocess.TimeoutExpired:
                self.emulator.popen.kill()
                self.emulator.popen.wait(timeout=10)
            if not self.keep:
                shutil.rmtree(self.dir, ignore_errors=True)

    # -- the emulator's control endpoints --

    def _post(self, path: str, body: dict[str, Any] | None, method: str = "POST") -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.control}/{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def set_faults(self, **plan: Any) -> None:
        self._post("faults", plan)

    def clear_faults(self) -> None:
        request = urllib.request.Request(f"{self.control}/faults", method="DELETE")
        urllib.request.urlopen(request, timeout=10).close()

    def rotate_key(self, key: str) -> None:
        self._post("rotate-key", {"api_key": key})

    def stats(self) -> dict[str, Any]:
        return emulator_stats(self.api_url)

    def healthz(self) -> tuple[int, dict[str, Any]]:
        assert self.metrics_port is not None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=5) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)
        except OSError:
            return 0, {}

    def api_calls_seen(self) -> int:
        """Every API call the daemon made since it started, answered or not (``deepva_watch_api_requests``)."""
        assert self.metrics_port is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("deepva_watch_api_requests_total{")))

    def log_events(self) -> Iterator[dict[str, Any]]:
        """The JSON log lines of every node."""
        for node in range(self.nodes):
            log = self.log_of(node)
            if not log.exists():
                continue
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue


def emulator_requests(stats: dict[str, Any]) -> int:
    return int(sum(stats["requests"].values()))


# -- judging the outcome ----------------------------------------------------------------------------------------------


def ledger_rows(ledger: Path | str) -> list[dict[str, Any]]:
    """Every row of the ledger's ``assets``, oldest first: a SQLite file, or a PostgreSQL URL read through psycopg."""
    if isinstance(ledger, str):
        return _postgres_rows(ledger, "SELECT * FROM assets ORDER BY id")
    if not ledger.exists():
        return []
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("SELECT * FROM assets ORDER BY id")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def _postgres_rows(url: str, sql: str) -> list[dict[str, Any]]:
    """The rows of a query, or none while the ledger's tables do not exist yet."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(url, row_factory=dict_row, connect_timeout=10) as conn:
        try:
            return list(conn.execute(sql).fetchall())
        except psycopg.errors.UndefinedTable:
            return []


def latest_rows(ledger: Path | str) -> dict[str, dict[str, Any]]:
    """The newest version of each file, by path relative to the watched folder."""
    return {row["relpath"]: row for row in ledger_rows(ledger)}


def all_final(ledger: Path | str, expected: int) -> bool:
    rows = latest_rows(ledger)
    return len(rows) >= expected and all(row["state"] in FINAL_STATES for row in rows.values())


def integrity(ledger: Path | str) -> str:
    """SQLite's ``integrity_check``; on PostgreSQL (which checks its own pages) the ledger's own invariants: no
    history of a row that does not exist, no two rows for one version of a file, and, with every node stopped, no
    row held in a working state."""
    if isinstance(ledger, str):
        orphans = _postgres_rows(ledger, "SELECT COUNT(*) AS n FROM history WHERE asset NOT IN (SELECT id FROM assets)")
        twins = _postgres_rows(ledger, "SELECT COUNT(*) AS n FROM (SELECT 1 FROM assets GROUP BY folder, relpath, "
                                       "size, mtime_ns HAVING COUNT(*) > 1) AS twice")
        from deepva_watch.states import HOME

        working = ", ".join("'" + str(state) + "'" for state in HOME)
        held = _postgres_rows(ledger, f"SELECT COUNT(*) AS n FROM assets WHERE state IN ({working})")
        found = {"orphan history entries": orphans[0]["n"], "versions recorded twice": twins[0]["n"],
                 "rows left in a working state": held[0]["n"]}
        return "; ".join(f"{what}: {n}" for what, n in found.items() if n) or "ok"
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=30)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


@dataclass
class Verdict:
    """What the three witnesses say about a finished run. ``problems`` is empty when every check passed."""

    files: int = 0
    valid: int = 0
    invalid: int = 0
    published: int = 0
    rejected: int = 0
    lost: list[str] = field(default_factory=list)
    duplicates: dict[str, int] = field(default_factory=dict)
    stray_jobs: int = 0
    jobs_created: int = 0
    completed_jobs: int = 0
    states: dict[str, int] = field(default_factory=dict)
    sidecars_checked: int = 0
    bad_sidecars: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    integrity: str = ""
    faults: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def verify(rig: Rig, planned: list[MediaFile]) -> Verdict:
    """Every valid file published exactly once, every invalid one rejected with a reason, sidecars strict, ledger
    sound, no temporary files. Call with the daemon stopped, so the ledger is checked at rest."""
    verdict = Verdict(files=len(planned), valid=sum(m.valid for m in planned),
                      invalid=sum(not m.valid for m in planned))
    rows = latest_rows(rig.ledger)
    stats = rig.stats()
    by_tag: dict[str, int] = stats["completed_jobs_by_tag"]
    verdict.jobs_created = stats["jobs_created"]
    verdict.completed_jobs = sum(by_tag.values())
    verdict.faults = stats["faults_injected"]
    verdict.states = dict(Counter(row["state"] for row in rows.values()))
    published_tags: set[str] = set()
    for media in planned:
        row = rows.get(media.relpath)
        if row is None:
            verdict.lost.append(f"{media.relpath}: never recorded")
            continue
        if media.valid:
            if row["state"] != "published":
                verdict.lost.append(f"{media.relpath}: {row['state']} ({row['last_error']})")
                continue
            verdict.published += 1
            published_tags.add(row["asset_id"])
            count = by_tag.get(row["asset_id"], 0)
            if count != 1:
                verdict.duplicates[media.relpath] = count
            for key in ("xmp_path", "json_path"):
                verdict.sidecars_checked += 1
                problem = _sidecar_problem(row[key], xml=key == "xmp_path")
                if problem:
                    verdict.bad_sidecars.append(f"{media.relpath}: {problem}")
        else:
            if row["state"] == "rejected" and row["last_error"]:
                verdict.rejected += 1
            else:
                verdict.lost.append(f"{media.relpath} (invalid): {row['state']} ({row['last_error']})")
    verdict.stray_jobs = sum(count for tag, count in by_tag.items() if tag not in published_tags)
    for path in rig.watch.rglob("*"):
        if TEMP_NAME.match(path.name):
            verdict.temp_files.append(str(path.relative_to(rig.watch)))
    verdict.integrity = integrity(rig.ledger)

    if verdict.lost:
        verdict.problems.append(f"{len(verdict.lost)} file(s) lost: {verdict.lost[:5]}")
    if verdict.duplicates:
        verdict.problems.append(f"{len(verdict.duplicates)} file(s) without exactly one job: {dict(list(verdict.duplicates.items())[:5])}")
    if verdict.stray_jobs:
        verdict.problems.append(f"{verdict.stray_jobs} completed job(s) whose tag is no published file")
    if verdict.bad_sidecars:
        verdict.problems.append(f"{len(verdict.bad_sidecars)} bad sidecar(s): {verdict.bad_sidecars[:5]}")
    if verdict.temp_files:
        verdict.problems.append(f"{len(verdict.temp_files)} temporary file(s) left: {verdict.temp_files[:5]}")
    if verdict.integrity != "ok":
        verdict.problems.append(f"ledger integrity_check: {verdict.integrity}")
    verdict.problems.extend(rig.findings)
    return verdict


def _sidecar_problem(path: str | None, *, xml: bool) -> str | None:
    if not path:
        return "no sidecar recorded"
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        return f"{path}: {error.strerror}"
    try:
        if xml:
            ElementTree.fromstring(data)
        else:
            json.loads(data.decode("utf-8"))
    except (ElementTree.ParseError, ValueError) as error:
        return f"{path}: {error}"
    return None


# -- chaos --------------------------------------------------------------------------------------------------------------


@dataclass
class ChaosResult:
    verdict: Verdict
    kills: int
    waves: int
    wall_seconds: float
    drain_seconds: float
    jobs_per_tag: dict[int, int]
    requests: int
    recovered: dict[str, int]
    """Rows a restart found in a working state (``recovered_in_flight``): steps a kill cut short."""
    run_dir: Path
    clean_up: bool = False
    storage_left: int = 0
    jobs_left: int = 0
    """With ``clean_up``: still at DeepVA at the end (the daemon's sweep retries deletions a kill cut off)."""
    ledger: str = "sqlite"
    nodes: int = 1


CHAOS_FAULTS: dict[str, Any] = {
    "error_rate": {"*": 0.05},
    "error_after_rate": {"*": 0.05},
    "reset_rate": {"*": 0.02},
    "reset_after_bytes": 2048,
    "latency": {"*": [0.0, 0.05]},
}
"""10 % API errors (half before handling, half after the side effect), 2 % connections reset, some latency."""


def run_chaos(files: int = 300, kills: int = 24, seed: int = 1, *, min_up: float = 0.4, max_up: float = 3.0,
              processing_time: float = 0.5, drain_timeout: float = 300, faults: dict[str, Any] | None = None,
              keep: bool = False, clean_up: bool = False, ledger_url: str | None = None, nodes: int = 1,
              lease: float = 10) -> ChaosResult:
    """Files dropped in waves while the API misbehaves and the daemon is SIGKILLed ``kills`` times, then a calm drain.
    With ``clean_up``, published files have their job and storage copy deleted, so a kill between a publish step and
    its commit must still find the job when the step is repeated.

    With ``ledger_url`` (an empty PostgreSQL database) and ``nodes``, that many daemons share the ledger and the
    folder; the kills fall on each node in turn in a random order, each node started again at once, while the others
    work on."""
    rng = random.Random(seed)
    planned = plan_media(files, rng)
    waves = max(1, min(kills, 8))
    per_wave = -(-len(planned) // waves)
    batches = [planned[i:i + per_wave] for i in range(0, len(planned), per_wave)]
    rig = Rig.create(processing_time=processing_time, ledger_url=ledger_url, nodes=nodes)
    rig.keep = keep
    started = time.monotonic()
    victims = [index % nodes for index in range(kills)]
    rng.shuffle(victims)
    try:
        rig.write_config(retries=2, clean_up=clean_up, lease=lease)
        rig.set_faults(**{"seed": seed, **(CHAOS_FAULTS if faults is None else faults)})
        wave_at = {round(i * kills / len(batches)): batch for i, batch in enumerate(batches)}
        for round_number in range(kills):
            if nodes == 1:
                rig.start_daemon()
            else:
                rig.start_all()
            if round_number in wave_at:
                drop(rig.watch, rig.dir / "staging", wave_at[round_number], rng)
            time.sleep(rng.uniform(min_up, max_up))
            rig.kill_daemon(victims[round_number])
        rig.clear_faults()
        drain_started = time.monotonic()
        rig.start_all()
        rig.await_drain(len(planned), drain_timeout)
        drain = time.monotonic() - drain_started
        # a moment more, so a duplicate job created late would have completed and be counted
        time.sleep(max(1.0, processing_time * 2))
        if clean_up:  # the sweep at start takes the deletions the kills cut off: give it the time it needs
            wait_until(lambda: _left_at_deepva(rig.stats()) == (0, 0), 30)
        rig.stop_daemon()
        verdict = verify(rig, [media for media, _ in planned])
        stats = rig.stats()
        return ChaosResult(
            verdict, rig.kills, len(batches), time.monotonic() - started, drain,
            dict(Counter(stats["completed_jobs_by_tag"].values())), emulator_requests(stats), recovered_steps(rig),
            rig.dir, clean_up, *_left_at_deepva(stats), ledger="postgres" if ledger_url else "sqlite", nodes=nodes,
        )
    finally:
        rig.close()


def _left_at_deepva(stats: dict[str, Any]) -> tuple[int, int]:
    """Storage objects and jobs still at DeepVA."""
    return stats["storage_objects"], sum(stats["jobs_by_state"].values())


def recovered_steps(rig: Rig) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for event in rig.log_events():
        if event.get("event") == "recovered_in_flight":
            counts.update({state: int(n) for state, n in event.items()
                           if state in ("uploading", "submitting", "publishing", "reporting")})
    return dict(sorted(counts.items()))


def chaos_misses(result: ChaosResult) -> list[str]:
    """What a chaos run failed to show, each as a line: empty when nothing was lost or repeated and every crash,
    fault and sidecar was accounted for (what the tests assert, one node or several)."""
    verdict = result.verdict
    checks = {
        "no kill cut a step short: the run proved nothing about crashes": sum(result.recovered.values()) > 0,
        "no API error was injected": verdict.faults.get("error", 0) + verdict.faults.get("error_after", 0) > 0,
        f"lost: {verdict.lost[:5]}": not verdict.lost,
        f"published {verdict.published} of {verdict.valid} valid": verdict.published == verdict.valid,
        f"rejected {verdict.rejected} of {verdict.invalid} invalid": verdict.rejected == verdict.invalid > 0,
        f"duplicates: {dict(list(verdict.duplicates.items())[:5])}": not verdict.duplicates,
        f"{verdict.stray_jobs} stray jobs": verdict.stray_jobs == 0,
        f"{verdict.completed_jobs} completed jobs for {verdict.valid} files": verdict.completed_jobs == verdict.valid,
        f"sidecars: {verdict.bad_sidecars[:5]}, {verdict.sidecars_checked} checked":
            not verdict.bad_sidecars and verdict.sidecars_checked == 2 * verdict.valid,
        f"ledger integrity: {verdict.integrity}": verdict.integrity == "ok",
        f"temporary files left: {verdict.temp_files[:5]}": not verdict.temp_files,
    }
    return [problem for problem, held in checks.items() if not held]


def print_chaos(result: ChaosResult, seed: int, statuses: str = "500,502,503") -> None:
    v = result.verdict
    on = f", {result.ledger} ledger, {result.nodes} nodes" if result.nodes > 1 or result.ledger != "sqlite" else ""
    report(f"chaos: {v.files} files, {result.kills} SIGKILLs, seed {seed}, injected 5xx: {statuses}{on}", [
        ("files", f"{v.files} ({v.valid} valid, {v.invalid} invalid) in {result.waves} waves"),
        ("published / rejected", f"{v.published} / {v.rejected}"),
        ("ledger states", ", ".join(f"{k}: {n}" for k, n in sorted(v.states.items()))),
        ("kills (SIGKILL)", str(result.kills)),
        ("steps cut short by a kill", ", ".join(f"{k}: {n}" for k, n in result.recovered.items()) or "none"),
        ("faults injected", ", ".join(f"{k}: {n}" for k, n in v.faults.items()) or "none"),
        ("API requests (emulator)", str(result.requests)),
        ("jobs created / completed", f"{v.jobs_created} / {v.completed_jobs}"),
        ("completed jobs per tag", ", ".join(f"{n} tag(s) with {k}" for k, n in sorted(result.jobs_per_tag.items()))),
        ("duplicates", str(sum(max(0, n - 1) for n in v.duplicates.values()) + v.stray_jobs)),
        ("files lost", str(len(v.lost))),
        ("sidecars parsed (strict)", f"{v.sidecars_checked - len(v.bad_sidecars)} / {v.sidecars_checked}"),
        ("temporary files left", str(len(v.temp_files))),
        *([("left at DeepVA (storage / jobs)", f"{result.storage_left} / {result.jobs_left}")] if result.clean_up else []),
        ("ledger integrity_check", v.integrity),
        ("wall time", f"{result.wall_seconds:.1f} s (final drain {result.drain_seconds:.1f} s)"),
        ("verdict", "PASS" if not v.problems else "FAIL: " + " | ".join(v.problems)),
    ])


# -- outage ------------------------------------------------------------------------------------------------------------


@dataclass
class OutageResult:
    verdict: Verdict
    outage_seconds: float
    calls_during_outage: int
    calls_by_half: tuple[int, int]
    """Calls in the first and the second half of the outage: a backoff that grows makes the second smaller."""
    call_bound: int
    rows_waiting: int
    retries: int
    emulator_requests_during: int
    drain_seconds: float
    wall_seconds: float
    failed: int
    run_dir: Path


def outage_call_bound(rows: int, retries: int, seconds: float, workers: int) -> int:
    """The most API calls the backoff allows while every call fails with no answer.

    A step that gets no answer is tried ``retries`` times by the client (``RetryPolicy``), then handed back to the
    ledger with ``Retry(counts=False)``: the row's attempts do not grow, so its next try comes after
    ``policy.backoff(1)``, at least ``BACKOFF_BASE_SECONDS / 2`` = 2.5 s. Each row waiting on the API therefore costs
    at most ``retries`` calls per 2.5 s; the tracker's list prefetch adds at most one page per cycle per worker.
    """
    from deepva_watch.flow.policy import BACKOFF_BASE_SECONDS

    cycles = int(seconds / (BACKOFF_BASE_SECONDS / 2)) + 1
    return rows * retries * cycles + workers * cycles


def run_outage(minutes: float = 2.0, files_before: int = 10, files_during: int = 20, seed: int = 2, *,
               retries: int = 3, processing_time: float = 0.3, drain_timeout: float = 180,
               keep: bool = False) -> OutageResult:
    """API unreachable (connections refused) for ``minutes`` while files keep arriving; then back."""
    rng = random.Random(seed)
    planned = plan_media(files_before + files_during, rng)
    before, during = planned[:files_before], planned[files_before:]
    rig = Rig.create(processing_time=processing_time)
    rig.keep = keep
    started = time.monotonic()
    seconds = minutes * 60
    try:
        rig.write_config(retries=retries, metrics=True)
        rig.start_daemon()
        rig.await_health_endpoint()
        drop(rig.watch, rig.dir / "staging", before, rng)
        rig.await_drain(len(before), 60)
        requests_before = emulator_requests(rig.stats())
        calls_before = rig.api_calls_seen()
        rig.set_faults(down=True, down_mode="refuse", down_for=seconds)
        outage_started = time.monotonic()
        # files arrive through the first half; the second half has a fixed backlog, so its calls show the backoff
        waves = 4
        for index in range(waves):
            drop(rig.watch, rig.dir / "staging", during[index::waves], rng)
            time.sleep(seconds / 2 / waves)
        calls_at_half = rig.api_calls_seen()
        time.sleep(max(0.0, seconds - (time.monotonic() - outage_started)))
        # the emulator reopens by itself after down_for; wait for that moment before counting
        wait_until(lambda: _reachable(rig), 30, 0.1)
        outage = time.monotonic() - outage_started
        calls_after = rig.api_calls_seen()
        calls_during = calls_after - calls_before
        halves = (calls_at_half - calls_before, calls_after - calls_at_half)
        requests_during = emulator_requests(rig.stats()) - requests_before
        rows_waiting = sum(
            1 for row in latest_rows(rig.ledger).values() if row["state"] not in FINAL_STATES + ("settling", "settled")
        )
        drain_started = time.monotonic()
        rig.await_drain(len(planned), drain_timeout)
        drain = time.monotonic() - drain_started
        rig.stop_daemon()
        verdict = verify(rig, [media for media, _ in planned])
        failed = sum(1 for row in latest_rows(rig.ledger).values() if row["state"] == "failed")
        bound = outage_call_bound(max(rows_waiting, len(during)), retries, outage, workers=1)
        if calls_during > bound:
            verdict.problems.append(f"{calls_during} API calls during the outage, more than the backoff allows ({bound})")
        if failed:
            verdict.problems.append(f"{failed} file(s) ended failed")
        return OutageResult(verdict, outage, calls_during, halves, bound, rows_waiting, retries, requests_during, drain,
                            time.monotonic() - started, failed, rig.dir)
    finally:
        rig.close()


def _reachable(rig: Rig) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", int(rig.api_url.split(":")[2].split("/")[0])), timeout=1):
            return True
    except OSError:
        return False


def print_outage(result: OutageResult, minutes: float) -> None:
    v = result.verdict
    report(f"outage: API refusing connections for {minutes:g} min while files arrive", [
        ("files", f"{v.files} ({v.valid} valid, {v.invalid} invalid)"),
        ("outage", f"{result.outage_seconds:.1f} s"),
        ("API calls during the outage", f"{result.calls_during_outage} (daemon's own count, /metrics; "
                                        f"bound {result.call_bound} for {result.rows_waiting} rows waiting, "
                                        f"retries {result.retries})"),
        ("calls, first / second half", f"{result.calls_by_half[0]} / {result.calls_by_half[1]}"),
        ("requests the emulator saw", f"{result.emulator_requests_during} (refused connections are not counted)"),
        ("ended failed", str(result.failed)),
        ("drain after the outage", f"{result.drain_seconds:.1f} s"),
        ("published / rejected", f"{v.published} / {v.rejected}"),
        ("duplicates", str(sum(max(0, n - 1) for n in v.duplicates.values()) + v.stray_jobs)),
        ("files lost", str(len(v.lost))),
        ("wall time", f"{result.wall_seconds:.1f} s"),
        ("verdict", "PASS" if not v.problems else "FAIL: " + " | ".join(v.problems)),
    ])


# -- refused key ---------------------------------------------------------------------------------------------------------


@dataclass
class RefusalPhase:
    """One rotation of the key: what happened between the first 401 and the fix, and how quickly work came back."""

    how: str
    requests_after_rotation: int
    refused_requests: int
    red_after_seconds: float | None
    health_reason: str
    failed_while_paused: int
    resumed_seconds: float | None
    """From the fix to the first file dropped after it being published: does new work flow again?"""
    held_back: int
    """Rows that met the 401 themselves and were still waiting when new work already flowed again."""
    green_again: bool


@dataclass
class RefusedKeyResult:
    verdict: Verdict
    phases: list[RefusalPhase]
    all_final_seconds: float | None
    """From the last fix until every file was final."""
    wall_seconds: float
    run_dir: Path


def _key_like(old: str, rng: random.Random) -> str:
    """A new key of the old one's length: the SIGHUP phase must change the key file without changing its size."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(rng.choice(alphabet) for _ in old)


def _refused_requests(rig: Rig) -> int:
    """401 answers the daemon heard, from its own metrics (the emulator counts requests, not their answers)."""
    assert rig.metrics_port is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{rig.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("deepva_watch_api_requests_total{") and 'status="401"' in line))


def run_refused_key(files_per_phase: int = 20, seed: int = 3, *, processing_time: float = 3.0,
                    api_failure_seconds: float = 300, pause_seconds: float = 4.0, resume_timeout: float = 30,
                    drain_timeout: float = 150, keep: bool = False) -> RefusedKeyResult:
    """Rotate the key while jobs run and files arrive; fix it by rewriting the key file, then again by SIGHUP.

    Each phase: half the files dropped, the key rotated once jobs run (so uploads, job creation and tracking all meet
    the 401), the other half dropped; then ``pause_seconds`` of watching (requests, /healthz, failed rows); then the
    fix, and one more file dropped to see new work flow. At the end everything must be published exactly once.
    """
    rng = random.Random(seed)
    planned = plan_media(files_per_phase * 2, rng)
    probes = [(MediaFile(f"after-fix-{n}.jpg", True), "sample.jpg") for n in range(2)]
    rig = Rig.create(processing_time=processing_time)
    rig.keep = keep
    started = time.monotonic()
    phases: list[RefusalPhase] = []
    last_fix = started
    try:
        rig.write_config(metrics=True, api_failure_seconds=api_failure_seconds)
        rig.start_daemon()
        rig.await_health_endpoint()
        for number, how in enumerate(("key file", "SIGHUP")):
            batch = planned[number * files_per_phase:(number + 1) * files_per_phase]
            jobs_before = rig.stats()["jobs_created"]
            drop(rig.watch, rig.dir / "staging", batch[: len(batch) // 2], rng)
            wait_until(lambda before=jobs_before: rig.stats()["jobs_created"] >= before + 3, 30, 0.05)
            old_key = rig.key_file.read_text().strip()
            new_key = _key_like(old_key, rng)
            requests_at_rotation = emulator_requests(rig.stats())
            refused_before = _refused_requests(rig)
            rotated = time.monotonic()
            rig.rotate_key(new_key)
            drop(rig.watch, rig.dir / "staging", batch[len(batch) // 2:], rng)
            red = wait_until(lambda: rig.healthz()[0] == 503, pause_seconds, 0.1)
            red_after = time.monotonic() - rotated if red else None
            time.sleep(max(0.0, pause_seconds - (time.monotonic() - rotated)))
            status, body = rig.healthz()
            requests_after = emulator_requests(rig.stats()) - requests_at_rotation
            refused = _refused_requests(rig) - refused_before
            failed = sum(1 for row in latest_rows(rig.ledger).values() if row["state"] == "failed")
            last_fix = time.monotonic()
            if how == "key file":
                rig.key_file.write_text(new_key + "\n")
            else:
                stamp = rig.key_file.stat()
                rig.key_file.write_text(new_key + "\n")
                os.utime(rig.key_file, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # unchanged: only SIGHUP tells
                rig.signal_daemon(signal.SIGHUP)
            probe, _ = probes[number]
            drop(rig.watch, rig.dir / "staging", [probes[number]], rng)
            resumed = wait_until(lambda relpath=probe.relpath: latest_rows(rig.ledger).get(relpath, {}).get("state") == "published",
                                 resume_timeout, 0.1)
            resumed_after = time.monotonic() - last_fix if resumed else None
            if not resumed:
                rig.findings.append(f"{how}: the state of the daemon when work had not resumed: {rig.post_mortem()}")
            held_back = sum(1 for row in latest_rows(rig.ledger).values()
                            if row["state"] not in FINAL_STATES and "refused" in (row["last_error"] or ""))
            green = bool(wait_until(lambda: rig.healthz()[0] == 200, 10, 0.1))
            reason = "; ".join(body.get("reasons", [])) or ("ok" if status == 200 else str(status))
            phases.append(RefusalPhase(how, requests_after, refused, red_after, reason, failed, resumed_after,
                                       held_back, green))
        everything = [media for media, _ in planned] + [media for media, _ in probes]
        done = rig.await_drain(len(everything), drain_timeout, 0.25)
        all_final_after = time.monotonic() - last_fix if done else None
        time.sleep(processing_time)
        rig.stop_daemon()
        verdict = verify(rig, everything)
        for phase in phases:
            if phase.failed_while_paused:
                verdict.problems.append(f"{phase.how}: {phase.failed_while_paused} file(s) failed while the key was refused")
            if phase.red_after_seconds is None:
                verdict.problems.append(f"{phase.how}: /healthz not red within {pause_seconds:g} s of the first 401")
            if phase.resumed_seconds is None:
                verdict.problems.append(f"{phase.how}: no new work within {resume_timeout:.0f} s of the fix")
            if not phase.green_again:
                verdict.problems.append(f"{phase.how}: /healthz did not turn green again")
        return RefusedKeyResult(verdict, phases, all_final_after, time.monotonic() - started, rig.dir)
    finally:
        rig.close()


def print_refused_key(result: RefusedKeyResult) -> None:
    v = result.verdict
    rows: list[tuple[str, str]] = [("files", f"{v.files} ({v.valid} valid, {v.invalid} invalid)")]
    for phase in result.phases:
        tag = f"[{phase.how}]"
        rows += [
            (f"{tag} requests after rotation", f"{phase.requests_after_rotation} ({phase.refused_requests} answered 401)"),
            (f"{tag} /healthz red after", "not within the pause" if phase.red_after_seconds is None
             else f"{phase.red_after_seconds:.1f} s"),
            (f"{tag} /healthz during the pause", phase.health_reason),
            (f"{tag} failed while paused", str(phase.failed_while_paused)),
            (f"{tag} new file published after fix", "no" if phase.resumed_seconds is None
             else f"{phase.resumed_seconds:.1f} s"),
            (f"{tag} rows still held back then", str(phase.held_back)),
        ]
    rows += [
        ("all final after the last fix", "no" if result.all_final_seconds is None else f"{result.all_final_seconds:.1f} s"),
        ("published / rejected", f"{v.published} / {v.rejected}"),
        ("duplicates", str(sum(max(0, n - 1) for n in v.duplicates.values()) + v.stray_jobs)),
        ("files lost", str(len(v.lost))),
        ("wall time", f"{result.wall_seconds:.1f} s"),
        ("verdict", "PASS" if not v.problems else "FAIL: " + " | ".join(v.problems)),
    ]
    report("refused key: rotated twice while jobs run", rows)


# -- command line --------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="scenario", required=True)
    chaos = sub.add_parser("chaos", help="faults + SIGKILLs while files arrive in waves")
    chaos.add_argument("--files", type=int, default=300)
    chaos.add_argument("--kills", type=int, default=24)
    chaos.add_argument("--seed", type=int, default=1)
    chaos.add_argument("--max-up", type=float, default=3.0, help="longest run between two kills, seconds")
    chaos.add_argument("--clean-up", action="store_true",
                       help="delete each published file's job and storage copy (delete_*_after_* on)")
    chaos.add_argument("--error-statuses", default="500,502,503",
                       help="5xx statuses the injected API errors use, comma-separated (default: %(default)s)")
    chaos.add_argument("--ledger", choices=("sqlite", "postgres"), default="sqlite",
                       help="a SQLite file, or a throwaway PostgreSQL server (pgcluster.py)")
    chaos.add_argument("--nodes", type=int, default=1, help="daemons sharing the ledger (PostgreSQL only above 1)")
    outage = sub.add_parser("outage", help="API unreachable for a while, files keep arriving")
    outage.add_argument("--minutes", type=float, default=2.0)
    outage.add_argument("--files-during", type=int, default=40)
    outage.add_argument("--seed", type=int, default=2)
    refused = sub.add_parser("refused-key", help="the key is rotated while files flow; fixed by key file, then SIGHUP")
    refused.add_argument("--files", type=int, default=30, help="files per phase")
    refused.add_argument("--seed", type=int, default=3)
    refused.add_argument("--api-failure-seconds", type=float, default=300,
                         help="metrics.api_failure_seconds in the daemon's config (default: the shipped default)")
    for each in (chaos, outage, refused):
        each.add_argument("--keep", action="store_true", help="keep the run directory (logs, ledger, tree)")
    args = parser.parse_args(argv)

    if args.scenario == "chaos":
        if args.nodes != 1 and args.ledger != "postgres":
            parser.error("--nodes above 1 needs --ledger postgres")
        statuses = [int(status) for status in args.error_statuses.split(",")]
        with contextlib.ExitStack() as stack:
            url = None
            if args.ledger == "postgres":
                from pgcluster import throwaway_cluster

                cluster = stack.enter_context(throwaway_cluster())
                url = cluster.url(cluster.create_database(owner="postgres"))
            result = run_chaos(args.files, args.kills, args.seed, max_up=args.max_up, keep=args.keep,
                               faults={**CHAOS_FAULTS, "error_statuses": statuses}, clean_up=args.clean_up,
                               ledger_url=url, nodes=args.nodes)
        print_chaos(result, args.seed, args.error_statuses)
        problems = result.verdict.problems
    elif args.scenario == "outage":
        outage_result = run_outage(args.minutes, files_during=args.files_during, seed=args.seed, keep=args.keep)
        print_outage(outage_result, args.minutes)
        problems = outage_result.verdict.problems
    else:
        refused_result = run_refused_key(args.files, args.seed, api_failure_seconds=args.api_failure_seconds,
                                         keep=args.keep)
        print_refused_key(refused_result)
        problems = refused_result.verdict.problems
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
