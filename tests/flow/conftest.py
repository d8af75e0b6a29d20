"""Stages under the generic runner, with an injected clock and an in-memory stand-in for DeepVA: deterministic runs,
no threads, no sleeping; time moves only when the test moves it."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from deepva_watch.config import Config, parse_config
from deepva_watch.deepva import NotFound
from deepva_watch.deepva.models import Job, JobPage, Segment, StorageObject
from deepva_watch.flow import Services
from deepva_watch.flow.runner import StageRunner
from deepva_watch.ledger import Asset, SqliteLedger
from deepva_watch.stages import STAGES
from deepva_watch.watch.discover import reconcile
from tests.conftest import FIXTURES


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeClient:
    """Records calls; jobs complete when the test says so. Errors can be queued per method."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.jobs: dict[str, Job] = {}
        self.errors: dict[str, list[Exception]] = {}
        self.storage: dict[str, StorageObject] = {}
        self.segments: list[Segment] = []
        self.uploaded: list[bytes] = []

    def _maybe_fail(self, method: str) -> None:
        self.calls.append(method)
        queue = self.errors.get(method)
        if queue:
            raise queue.pop(0)

    def upload(self, source: Any, *, folder: str = "/", filename: str | None = None, throttle: Any = None,
               on_progress: Any = None, max_bytes_per_second: float | None = None) -> StorageObject:
        self._maybe_fail("upload")
        name = filename or source.name
        size = source.stat().st_size if isinstance(source, Path) else os.fstat(source.fileno()).st_size
        self.uploaded.append(source.read() if not isinstance(source, Path) else source.read_bytes())
        stored = StorageObject(id=str(len(self.storage) + 1), url=f"storage://{name}", name=name,
                               file_size=size, uploaded=True, upload_failed=False)
        if on_progress is not None:
            on_progress(size)
        self.storage[stored.id] = stored
        return stored

    def list_storage(self, folder: str = "/") -> list[StorageObject]:
        self._maybe_fail("list_storage")
        return list(self.storage.values())

    def delete_storage(self, storage_id: str) -> None:
        self._maybe_fail("delete_storage")
        self.storage.pop(storage_id, None)

    def list_jobs(self, *, offset: int = 0, limit: int = 10, tag: str | None = None, only: Any = None) -> JobPage:
        self._maybe_fail("list_jobs")
        jobs = list(self.jobs.values())[offset:offset + limit]
        read = tuple(job for job in jobs if only is None or job.id in only)
        return JobPage(total=len(self.jobs), offset=offset, jobs=read, has_next=offset + limit < len(self.jobs),
                       listed=len(jobs))

    def create_job(self, sources: Any, modules: Any, *, tag: str, webhook: Any = None) -> Job:
        self._maybe_fail("create_job")
        job = Job(id=f"job-{len(self.jobs) + 1}", tag=tag, state="waiting", progress=0.0, sources=tuple(sources),
                  modules=modules)
        self.jobs[job.id] = job
        return job

    def find_jobs_by_tag(self, tag: str) -> list[Job]:
        self._maybe_fail("find_jobs_by_tag")
        return [job for job in self.jobs.values() if job.tag == tag]

    def get_job(self, job_id: str) -> Job:
        self._maybe_fail("get_job")
        if job_id not in self.jobs:
            raise NotFound("GET", f"/jobs/{job_id}/", status=404)
        return self.jobs[job_id]

    def iter_detailed_results(self, job_id: str, *, page_size: int = 100) -> Iterator[Segment]:
        self._maybe_fail("detailed_results")
        return iter(self.segments)

    def delete_job(self, job_id: str) -> None:
        self._maybe_fail("delete_job")

    def finish(self, state: str = "completed", errors: tuple[str, ...] = ()) -> None:
        for job_id, job in self.jobs.items():
            self.jobs[job_id] = replace(job, state=state, progress=1.0, errors=errors)


@dataclass
class Flow:
    """A ledger, services and one runner per stage over watched folders, all driven by the test."""

    watch: Path
    config: Config
    services: Services
    clock: FakeClock
    client: FakeClient
    runners: dict[str, StageRunner]

    def run(self, *names: str) -> None:
        for name in names:
            self.runners[name].run_once()

    def only(self) -> Asset:
        (row,) = self.services.ledger.query()
        return row

    def publish_all(self, rounds: int = 4) -> None:
        """Every recorded file settled, submitted, finished by the fake DeepVA and published."""
        self.clock.advance(max(folder.settle_seconds for folder in self.config.folders) + 1)
        for _ in range(rounds):
            self.run("settle", "sniff", "upload", "submit")
        self.client.finish()
        self.clock.advance(300)
        for _ in range(rounds):
            self.run("track", "publish")

    def drop(self, *names: str, fixture: str = "sample.png", folder: int = 0) -> None:
        """Files arrive and a scan records them."""
        for name in names:
            shutil.copy(FIXTURES / fixture, Path(self.config.folders[folder].path) / name)
        reconcile(self.services.ledger, self.config.folders[folder], self.clock.now())

    def accept(self, *names: str) -> None:
        """Files dropped, settled and sniffed: ready to upload."""
        self.drop(*names)
        self.clock.advance(max(folder.settle_seconds for folder in self.config.folders))
        self.run("settle", "sniff")


def make_flow(config_data: dict[str, Any], client: FakeClient | None = None) -> Flow:
    config = parse_config(config_data)
    clock, client = FakeClock(), client or FakeClient()
    services = Services(config, SqliteLedger(config.ledger), client, clock)  # type: ignore[arg-type]
    runners = {stage.name: StageRunner(stage, services, threading.Event(), lambda state, due_at: None)
               for stage in STAGES}
    return Flow(Path(config.folders[0].path), config, services, clock, client, runners)


def one_folder(tmp_path: Path, top: dict[str, Any] | None = None, client: FakeClient | None = None,
               settle_seconds: float = 1, **folder: Any) -> Flow:
    """A flow over one watched folder (``tmp_path/watch``) with the given top-level and folder settings."""
    watch = tmp_path / "watch"
    watch.mkdir(exist_ok=True)
    return make_flow({"ledger": str(tmp_path / "l.sqlite3"), **(top or {}),
                      "folders": [{"path": str(watch), "modules": {"m": {}}, "settle_seconds": settle_seconds,
                                   **folder}]},
                     client)


@pytest.fixture
def flow(tmp_path: Path) -> Flow:
    """One folder, face recognition, a quiet period of 10 s, a poll interval of 5 s."""
    watch = tmp_path / "watch"
    watch.mkdir()
    return make_flow({"ledger": str(tmp_path / "ledger.sqlite3"), "poll_interval_seconds": 5,
                      "folders": [{"path": str(watch), "modules": {"face_recognition": {}}, "settle_seconds": 10}]})
