"""Is the service doing its job? The answer /healthz gives, and the reasons when it is not.

Health is deliberately narrower than "no errors": one file DeepVA cannot read is that file's problem, not the
service's. The service is unhealthy (red) when a whole folder is paused (its share dropped), when *every* call to
DeepVA has failed for longer than ``metrics.api_failure_seconds`` (key revoked, network gone, DeepVA down), or when the
ledger cannot be written (disk full, read-only mount), because then nothing moves at all. It is degraded (amber)
when everything still moves but not as configured: a folder whose events went deaf and is polled instead.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence


class FolderState(Protocol):
    """What health and metrics read of a folder's watch (``deepva_watch.watch.supervisor.FolderStatus`` has it).

    A protocol rather than an import, so that this module does not pull in the whole watching machinery.
    """

    @property
    def folder(self) -> str: ...

    @property
    def paused(self) -> bool: ...

    @property
    def reason(self) -> str: ...

    @property
    def last_scan_at(self) -> float | None: ...

    @property
    def warning(self) -> str: ...

    @property
    def events_missed(self) -> int: ...

    @property
    def names_skipped(self) -> int: ...

#: Statuses that mean "DeepVA is not working for us", as opposed to "this one request was wrong" (400, 404, 409 ...):
#: no answer at all (None), server errors, a refused key, and rate limiting.
API_DOWN_STATUSES = frozenset({401, 403, 429})


def is_api_failure(status: int | None) -> bool:
    return status is None or status >= 500 or status in API_DOWN_STATUSES


@dataclass(frozen=True)
class HealthReport:
    healthy: bool
    reasons: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """``ok`` (green), ``degraded`` (amber: working, not as configured) or ``unhealthy`` (red)."""
        if not self.healthy:
            return "unhealthy"
        return "degraded" if self.warnings else "ok"

    def as_json(self) -> dict[str, object]:
        return {"status": self.status, "healthy": self.healthy, "reasons": list(self.reasons),
                "warnings": list(self.warnings)}


class Health:
    """Fed by the daemon (API outcomes) and asked by the HTTP endpoint; thread-safe.

    ``folder_statuses`` and ``ledger_problem`` are read at question time, so the answer is never staler than the
    request. ``clock`` is monotonic seconds; tests inject their own.
    """

    def __init__(
        self,
        *,
        api_failure_seconds: float,
        folder_statuses: Callable[[], Sequence[FolderState]],
        ledger_problem: Callable[[], str | None],
        api_paused: Callable[[], str | None] = lambda: None,
        ledger_warnings: Sequence[Callable[[], str | None]] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api_failure_seconds = api_failure_seconds
        self.folder_statuses = folder_statuses
        self.ledger_problem = ledger_problem
        self.api_paused = api_paused
        self.ledger_warnings = ledger_warnings
        """Asked only while the ledger answers: jobs running too long, the daily budget reached."""
        self.clock = clock
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        self._last_failure_status: int | None = None
        self._last_ok: float | None = None

    def api_ok(self) -> None:
        with self._lock:
            self._failing_since = None
            self._last_ok = self.clock()

    def api_failed(self, status: int | None) -> None:
        """A call found DeepVA not working (no answer, 5xx, 401/403, 429); see :func:`is_api_failure`."""
        with self._lock:
            if self._failing_since is None:
                self._failing_since = self.clock()
            self._last_failure_status = status

    def api_result(self, status: int | None) -> None:
        """Record any call's outcome (None: no HTTP answer); sorts it into :meth:`api_ok` or :meth:`api_failed`."""
        if is_api_failure(status):
            self.api_failed(status)
        else:
            self.api_ok()

    def api_failing_for(self) -> float | None:
        """Seconds since the first of an unbroken run of failed calls, or None while the API answers."""
        with self._lock:
            return None if self._failing_since is None else self.clock() - self._failing_since

    def check(self) -> HealthReport:
        reasons: list[str] = []
        warnings: list[str] = []
        for folder in self.folder_statuses():
            if folder.paused:
                reasons.append(f"folder {folder.folder} is paused: {folder.reason or 'no reason given'}")
            elif folder.warning:
                warnings.append(f"folder {folder.folder}: {folder.warning}")
        problem = self.ledger_problem()
        if problem:
            reasons.append(f"ledger not writable: {problem}")
        else:
            warnings.extend(warning for ask in self.ledger_warnings if (warning := ask()))
        paused = self.api_paused()
        if paused:
            reasons.append(f"all DeepVA work is paused: {paused}")
        failing_for = self.api_failing_for()
        if failing_for is not None and failing_for > self.api_failure_seconds:
            status = self._last_failure_status
            last = "no answer" if status is None else f"HTTP {status}"
            reasons.append(f"every DeepVA API call has failed for {failing_for:.0f} s (last: {last})")
        return HealthReport(not reasons, tuple(reasons), tuple(warnings))


MIN_FREE_BYTES = 16 * 1024 * 1024


def ledger_write_problem(path: Path) -> str | None:
    """Why the ledger at ``path`` cannot be written, or None. Cheap enough for every /healthz request.

    Checks what root would also trip over (a read-only mount, a full disk, a path that is not a file), not only
    permission bits, so the answer is right for the service user and in tests run as root alike.
    """
    folder = path.parent
    if path.exists() and not path.is_file():
        return f"{path} is not a regular file"
    if not folder.is_dir():
        return f"{folder} is not a directory"
    if path.exists() and not os.access(path, os.W_OK):
        return f"no write permission on {path}"
    if not os.access(folder, os.W_OK):  # SQLite creates its -wal and -shm files next to the ledger
        return f"no write permission on {folder}"
    try:
        stats = os.statvfs(folder)
    except OSError as error:
        return f"cannot stat {folder}: {error.strerror}"
    if stats.f_flag & os.ST_RDONLY:
        return f"{folder} is on a read-only file system"
    if stats.f_bavail * stats.f_frsize < MIN_FREE_BYTES:
        return f"the file system holding {folder} is full"
    return None
