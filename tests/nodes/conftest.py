"""Daemons as real processes (``deepva-watch run``), nodes of one PostgreSQL ledger (the session's throwaway server,
a fresh database per test), the emulator in the test's process, and a shared watched folder.

The nodes run with the shortest lease (10 s) and short settle times, so that takeovers happen within a test.
"""

from __future__ import annotations

import json
import random
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import reliability

from tests.conftest import DaemonProcess, write_config

LEASE = 10
FOLDER_ID = "share"
IMAGES = ("sample.jpg", "portrait.jpg", "sample.png")
DETAILED_RESULTS = "GET /api/v1/jobs/{id}/detailed-results/"


def unique_images(count: int, seed: int, prefix: str = "img") -> list[tuple[str, bytes]]:
    """``count`` small images, each made unique (``reliability.unique_copy``) so that each is its own job."""
    rng = random.Random(seed)
    return [(f"{prefix}{index:04d}-{IMAGES[index % len(IMAGES)]}", reliability.unique_copy(IMAGES[index % len(IMAGES)], rng))
            for index in range(count)]


def drop(folder: Path, staging: Path, files: list[tuple[str, bytes]]) -> None:
    """Written next door and renamed in, as copy tools do."""
    staging.mkdir(exist_ok=True)
    for name, data in files:
        temp = staging / name
        temp.write_bytes(data)
        temp.rename(folder / name)


@dataclass
class Cluster:
    """Nodes on one ledger database: their configs, processes and logs, and what the ledger says."""

    tmp_path: Path
    ledger_url: str
    api_url: str
    factory: Callable[..., DaemonProcess]
    nodes: dict[str, DaemonProcess] = field(default_factory=dict)
    configs: dict[str, Path] = field(default_factory=dict)

    def configure(self, name: str, watch: Path, **top: Any) -> Path:
        """Node ``name``'s config: this ledger, the short lease, the folder under the shared id."""
        folder = {"id": FOLDER_ID, "settle_seconds": 0.2, "min_size": 0, "watch": "events", **top.pop("folder", {})}
        settings: dict[str, Any] = {"ledger": self.ledger_url, "node_name": name, "node_lease_seconds": LEASE,
                                    "log_level": "info", "max_requests_per_minute": 6000, "poll_interval_seconds": 0.3,
                                    "folder": folder, **top}
        config_dir = self.tmp_path / name
        config_dir.mkdir(exist_ok=True)
        self.configs[name] = write_config(config_dir, self.api_url, [watch], **settings)
        return self.configs[name]

    def start(self, name: str) -> DaemonProcess:
        self.nodes[name] = self.factory(self.configs[name])
        return self.nodes[name]

    def query(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        import psycopg  # where it is missing, the postgres fixtures have skipped (or failed, in CI) before
        from psycopg.rows import dict_row

        try:
            with psycopg.connect(self.ledger_url, row_factory=dict_row, connect_timeout=10) as conn:
                return list(conn.execute(sql, parameters).fetchall())
        except psycopg.errors.UndefinedTable:  # before the first node made the schema
            return []

    def latest(self) -> dict[str, dict[str, Any]]:
        return reliability.latest_rows(self.ledger_url)

    def published(self, expected: int) -> bool:
        rows = self.latest()
        return len(rows) >= expected and all(row["state"] == "published" for row in rows.values())

    def stop_all(self) -> None:
        for daemon in self.nodes.values():
            if daemon.process is not None and daemon.process.poll() is None:
                daemon.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{daemon.log_text()[-6000:]}" for name, daemon in self.nodes.items())


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str, emulator: Any,
            daemon_factory: Callable[..., DaemonProcess]) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path, postgres_url, emulator.base_url, daemon_factory)
    yield nodes
    nodes.stop_all()


@dataclass
class Outcome:
    """What the ledger, the emulator and the files say once every node has stopped."""

    problems: list[str]
    publishers: Counter[str]
    """Published rows by the node that held them last (the one that published them)."""


def judge(cluster: Cluster, emulator: Any, names: list[str], roots: dict[str, Path], *,
          fetched_once: bool | None = True) -> Outcome:
    """Each file published exactly once (one published version, one ``published`` entry in its history), one job per
    file at the emulator and no other, its detailed results fetched once, both sidecars next to it and parseable.
    ``roots``: each node's path of the watched folder, by node name. Without ``fetched_once`` the detailed results may
    be fetched again (a node killed between fetching them and recording the publish); None: not counted."""
    problems: list[str] = []
    versions = Counter(row["relpath"] for row in cluster.query("SELECT relpath FROM assets WHERE state = 'published'"))
    endings = Counter(row["relpath"] for row in cluster.query(
        "SELECT assets.relpath FROM history JOIN assets ON assets.id = history.asset WHERE history.to_state = 'published'"))
    latest = cluster.latest()
    jobs = Counter(job["tag"] for job in emulator.jobs())
    stats = emulator.stats()
    publishers: Counter[str] = Counter()
    for name in names:
        row = latest.get(name)
        if row is None or row["state"] != "published":
            problems.append(f"{name}: {'never recorded' if row is None else row['state']}")
            continue
        publishers[row["held_by"]] += 1
        if versions[name] != 1 or endings[name] != 1:
            problems.append(f"{name}: {versions[name]} published version(s), {endings[name]} published entries")
        if jobs[row["asset_id"]] != 1:
            problems.append(f"{name}: {jobs[row['asset_id']]} job(s) for its tag")
        root = roots[row["held_by"]]
        for key, parse in (("xmp_path", ElementTree.fromstring), ("json_path", json.loads)):
            path = Path(row[key] or "")
            if path.parent != (root / name).parent:
                problems.append(f"{name}: {key} {path} is not next to the media in {root}")
            try:
                parse(path.read_bytes())
            except (OSError, ValueError, ElementTree.ParseError) as error:
                problems.append(f"{name}: {key} {path}: {error}")
    if sum(jobs.values()) != len(names) or stats["jobs_created"] != len(names):
        problems.append(f"{stats['jobs_created']} jobs created ({sum(jobs.values())} listed) for {len(names)} files")
    fetched = stats["requests"].get(DETAILED_RESULTS, 0)
    if fetched_once is None:
        pass
    elif (fetched != len(names)) if fetched_once else (fetched < len(names)):
        problems.append(f"detailed results fetched {fetched} times for {len(names)} files")
    return Outcome(problems, publishers)
