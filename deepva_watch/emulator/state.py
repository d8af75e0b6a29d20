"""The emulator's memory: jobs, storage objects and the counters tests and benchmarks read.

One lock guards everything; every critical section is a few dictionary operations, so contention is negligible even
under many concurrent uploads. Slow work (probing a video, fetching a URL, synthesising results) happens outside the
lock; if two requests race to compute the same cached value, both compute the same deterministic answer and one is kept.

Injected faults that shape jobs and uploads (a job's fate, ``upload_failed``) are decided here when the job or object is
created, by the :class:`~.faults.FaultInjector` the emulator shares with its HTTP layer.
"""

from __future__ import annotations

import secrets
import shutil
import string
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Clock
from .faults import FaultInjector
from .onprem import OnPremRoots
from .payloads import InvalidRequest, JobRequest
from .probe import DEFAULT_FRAME_RATE, fingerprint, probe_video
from .results import JobResults, synthesize
from .sources import STORAGE_SCHEME, FetchSettings, ResolvedSource, SourceFacts, SourceRejected, SourceResolver
from .timeline import Timeline, processing_time_for

_KEY_ALPHABET = string.ascii_letters + string.digits


@dataclass
class StoredObject:
    id: int
    url: str
    name: str
    folder: str
    path: Path
    size: int
    media_type: str
    upload_failed: bool = False
    facts: SourceFacts | None = None


@dataclass
class JobRecord:
    id: str
    sequence: int
    tag: str
    sources: tuple[str, ...]
    modules: dict[str, Any]
    webhook: dict[str, Any] | None
    timeline: Timeline
    resolved: tuple[ResolvedSource, ...]
    errors: tuple[str, ...] = ()
    results: JobResults | None = None
    announced: set[str] = field(default_factory=set)
    """Webhook events already queued for this job; only the webhook ticker touches it."""

    @property
    def media_type(self) -> str:
        return self.resolved[0].facts.media_type


@dataclass
class Counters:
    requests: Counter[str] = field(default_factory=Counter)
    jobs_created: int = 0
    uploads_completed: int = 0
    bytes_uploaded: int = 0
    active_uploads: int = 0
    peak_concurrent_uploads: int = 0
    peak_active_jobs: int = 0
    webhooks: Counter[str] = field(default_factory=Counter)
    completed_deleted_by_tag: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class StateOptions:
    """What shapes jobs and sources beyond timing; the defaults are a plain cloud install."""

    onprem_roots: Mapping[str, Path] = field(default_factory=dict)
    fetch_max_bytes: int = 1 << 30
    fetch_timeout: float = 10.0


class EmulatorState:
    def __init__(
        self,
        data_dir: Path,
        clock: Clock,
        processing_time: float,
        queue_time: float,
        options: StateOptions | None = None,
        faults: FaultInjector | None = None,
        *,
        video_processing_ratio: float = 0.0,
    ) -> None:
        options = options or StateOptions()
        self._lock = threading.Lock()
        self.faults = faults or FaultInjector()
        self._clock = clock
        self._processing_time = processing_time
        self._queue_time = queue_time
        self._video_ratio = video_processing_ratio
        self._jobs: dict[str, JobRecord] = {}  # in creation order, so newest first is a reversed walk, not a sort
        self._jobs_by_tag: dict[str, dict[str, JobRecord]] = {}
        self._unfinished: dict[str, JobRecord] = {}  # kept small: finished jobs leave it at the next creation
        self._objects: dict[int, StoredObject] = {}
        self._objects_by_url: dict[str, StoredObject] = {}
        self._next_object_id = 1
        self._next_sequence = 1
        self._counters = Counters()
        self.storage_dir = data_dir / "storage"
        self._incoming_dir = data_dir / "incoming"
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self._incoming_dir.mkdir(parents=True, exist_ok=True)
        self._awaiting_webhooks: dict[str, JobRecord] = {}
        self._resolver = SourceResolver(
            self,
            OnPremRoots(options.onprem_roots),
            FetchSettings(data_dir / "fetched", options.fetch_max_bytes, options.fetch_timeout),
        )

    def now(self) -> float:
        return self._clock()

    def set_processing_time(self, seconds: float) -> None:
        """Applies to jobs created from now on; running jobs keep the timeline they were created with. With a
        ``video_processing_ratio`` this is the time of each image source."""
        if seconds < 0:
            raise ValueError("processing time must not be negative")
        with self._lock:
            self._processing_time = seconds

    # -- requests and stats -------------------------------------------------------------------------------------

    def record_request(self, route: str) -> None:
        with self._lock:
            self._counters.requests[route] += 1

    def count_webhook(self, outcome: str) -> None:
        """``webhooks_delivered``, ``webhooks_failed`` or ``webhooks_skipped``."""
        with self._lock:
            self._counters.webhooks[outcome] += 1

    def stats(self) -> dict[str, Any]:
        injected = self.faults.injected()
        with self._lock:
            counters = self._counters
            now = self._clock()
            by_state: Counter[str] = Counter()
            completed_by_tag: Counter[str] = Counter(counters.completed_deleted_by_tag)
            for job in self._jobs.values():
                state = job.timeline.phase_at(now).state
                by_state[state] += 1
                if state == "completed":
                    completed_by_tag[job.tag] += 1
            return {
                "requests": dict(sorted(counters.requests.items())),
                "jobs_created": counters.jobs_created,
                "storage_objects": len(self._objects),
                "uploads_completed": counters.uploads_completed,
                "active_uploads": counters.active_uploads,
                "peak_concurrent_uploads": counters.peak_concurrent_uploads,
                "peak_active_jobs": counters.peak_active_jobs,
                "bytes_uploaded": counters.bytes_uploaded,
                "jobs_by_state": dict(sorted(by_state.items())),
                "completed_jobs_by_tag": dict(sorted(completed_by_tag.items())),
                "faults_injected": injected,
                "webhooks_delivered": counters.webhooks["webhooks_delivered"],
                "webhooks_failed": counters.webhooks["webhooks_failed"],
                "webhooks_skipped": counters.webhooks["webhooks_skipped"],
            }

    # -- jobs -----------------------------------------------------------------------------------------------------

    def create_job(self, request: JobRequest) -> JobRecord:
        errors: list[str] = []
        resolved: list[ResolvedSource] = []
        for source in request.sources:
            try:
                resolved.append(self._resolver.resolve(source))
            except SourceRejected as rejection:
                errors.append(f"sources: {rejection}")
        if errors:
            raise InvalidRequest(errors)
        problems = tuple(item.problem for item in resolved if item.problem is not None)
        media = [(item.facts.media_type, item.facts.duration) for item in resolved]
        with self._lock:
            now = self._clock()
            processing_time = processing_time_for(media, self._processing_time, self._video_ratio)
            sequence = self._next_sequence
            outcome, job_errors = self.faults.job_fate(sequence)
            if problems:
                outcome, job_errors = "failed", problems
            job = JobRecord(
                id=str(uuid.uuid4()),
                sequence=sequence,
                tag=request.tag,
                sources=request.sources,
                modules=dict(request.modules),
                webhook=dict(request.webhook) if request.webhook is not None else None,
                timeline=Timeline(now, self._queue_time, processing_time, outcome),
                resolved=tuple(resolved),
                errors=job_errors,
            )
            self._next_sequence += 1
            # Active means "created and not yet completed"; the new job counts itself even when it completes at once.
            for finished in [key for key, other in self._unfinished.items() if other.timeline.is_finished(now)]:
                del self._unfinished[finished]
            active = 1 + len(self._unfinished)
            self._jobs[job.id] = job
            self._jobs_by_tag.setdefault(job.tag, {})[job.id] = job
            self._unfinished[job.id] = job
            if job.webhook is not None:
                self._awaiting_webhooks[job.id] = job
            self._counters.jobs_created += 1
            self._counters.peak_active_jobs = max(self._counters.peak_active_jobs, active)
        return job

    def jobs_newest_first(self, tag: str | None = None) -> list[JobRecord]:
        with self._lock:
            source = self._jobs if tag is None else self._jobs_by_tag.get(tag, {})
            return list(reversed(source.values()))

    def job(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._jobs.get(job_id)

    def delete_job(self, job_id: str) -> bool:
        """A deleted job that had completed still counts in ``completed_jobs_by_tag``: duplicates must stay visible."""
        with self._lock:
            job = self._jobs.pop(job_id, None)
            if job is None:
                return False
            self._jobs_by_tag.get(job.tag, {}).pop(job_id, None)
            self._unfinished.pop(job_id, None)
            self._awaiting_webhooks.pop(job_id, None)
            if job.timeline.is_completed(self._clock()):
                self._counters.completed_deleted_by_tag[job.tag] += 1
            return True

    def jobs_awaiting_webhooks(self) -> list[JobRecord]:
        with self._lock:
            return sorted(self._awaiting_webhooks.values(), key=lambda job: job.sequence)

    def webhooks_finished(self, job: JobRecord) -> None:
        with self._lock:
            self._awaiting_webhooks.pop(job.id, None)

    def results_of(self, job: JobRecord) -> JobResults:
        if job.results is None:
            job.results = synthesize(job.resolved, job.modules)
        return job.results

    # -- storage --------------------------------------------------------------------------------------------------

    @contextmanager
    def upload_in_progress(self) -> Iterator[None]:
        with self._lock:
            self._counters.active_uploads += 1
            self._counters.peak_concurrent_uploads = max(
                self._counters.peak_concurrent_uploads, self._counters.active_uploads
            )
        try:
            yield
        finally:
            with self._lock:
                self._counters.active_uploads -= 1

    def count_uploaded_bytes(self, count: int) -> None:
        with self._lock:
            self._counters.bytes_uploaded += count

    def incoming_path(self) -> Path:
        return self._incoming_dir / f"{uuid.uuid4().hex}.part"

    def store_upload(self, incoming: Path, name: str, folder: str, size: int, media_type: str) -> StoredObject:
        """Moves a finished upload into storage under a name of our choosing: client file names never reach a path.

        An injected ``upload_failed`` fault keeps the object (it is listed and can be fetched, as on the real service)
        but marks it failed, and jobs cannot use it.
        """
        upload_failed = self.faults.upload_fails()
        with self._lock:
            object_id = self._next_object_id
            self._next_object_id += 1
            url = STORAGE_SCHEME + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(20))
        path = self.storage_dir / f"{object_id}-{url.removeprefix(STORAGE_SCHEME)}"
        shutil.move(incoming, path)
        stored = StoredObject(object_id, url, name, folder, path, size, media_type, upload_failed)
        with self._lock:
            self._objects[object_id] = stored
            self._objects_by_url[url] = stored
            self._counters.uploads_completed += 1
        return stored

    def objects(self, folder: str | None = None) -> list[StoredObject]:
        with self._lock:
            found = [item for item in self._objects.values() if folder is None or item.folder == folder]
        return sorted(found, key=lambda item: item.id)

    def stored_object(self, object_id: int) -> StoredObject | None:
        with self._lock:
            return self._objects.get(object_id)

    def delete_object(self, object_id: int) -> bool:
        with self._lock:
            stored = self._objects.pop(object_id, None)
            if stored is None:
                return False
            self._objects_by_url.pop(stored.url, None)
        stored.path.unlink(missing_ok=True)
        return True

    def facts_for(self, url: str) -> SourceFacts | None:
        """Probed once per object and cached, so a deleted file does not change results of jobs already created."""
        with self._lock:
            stored = self._objects_by_url.get(url)
        if stored is None:
            return None
        if stored.upload_failed:
            raise SourceRejected(f"storage object failed to upload: {url}")
        if stored.facts is None:
            try:
                seed = fingerprint(stored.path)
            except FileNotFoundError:  # deleted while this job was being created
                return None
            if stored.media_type == "image":
                stored.facts = SourceFacts("image", seed, 0.0, DEFAULT_FRAME_RATE)
            else:
                video = probe_video(stored.path)
                stored.facts = SourceFacts("video", seed, video.duration, video.frame_rate)
        return stored.facts
