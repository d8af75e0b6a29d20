"""What the stages need of DeepVA, as a protocol: :class:`~deepva_watch.deepva.client.DeepVAClient` is the real one,
tests pass a stand-in. Every method raises only :class:`~deepva_watch.deepva.errors.DeepVAError` for API failures."""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from deepva_watch.deepva.models import Job, JobPage, Segment, StorageObject
from deepva_watch.deepva.upload import Throttle


class DeepVA(Protocol):
    def upload(
        self,
        source: Path | BinaryIO,
        *,
        folder: str = "/",
        filename: str | None = None,
        on_progress: Callable[[int], None] | None = None,
        max_bytes_per_second: float | None = None,
        throttle: Throttle | None = None,
    ) -> StorageObject:
        """Stream ``path`` to storage. May leave a partial object when it raises after bytes went out."""
        ...

    def list_storage(self, folder: str = "/") -> list[StorageObject]: ...

    def delete_storage(self, storage_id: str) -> None: ...

    def create_job(
        self, sources: Sequence[str], modules: Mapping[str, Any], *, tag: str,
        webhook: Mapping[str, Any] | None = None,
    ) -> Job:
        """May create the job even when it raises: callers look for their tag before they try again."""
        ...

    def find_jobs_by_tag(self, tag: str) -> list[Job]: ...

    def get_job(self, job_id: str) -> Job: ...

    def list_jobs(
        self, *, offset: int = 0, limit: int = 10, tag: str | None = None, only: Container[str] | None = None,
    ) -> JobPage: ...

    def iter_detailed_results(self, job_id: str, *, page_size: int = 100) -> Iterator[Segment]: ...

    def delete_job(self, job_id: str) -> None: ...
