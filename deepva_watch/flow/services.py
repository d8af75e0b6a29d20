"""Everything a step may use, injected so that tests substitute the clock, the client and the paths."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog

from deepva_watch.config import Config, FolderConfig
from deepva_watch.deepva.api import DeepVA
from deepva_watch.deepva.upload import Throttle
from deepva_watch.flow.transfers import Transfers
from deepva_watch.ledger import Asset, Ledger

log = structlog.get_logger("deepva_watch.flow")


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch; what the ledger stores."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class Telemetry(Protocol):
    """What steps report beyond the ledger (the daemon's metrics implement it)."""

    def uploaded_bytes(self, count: int) -> None: ...

    def job_finished(self, seconds: float, state: str) -> None: ...


class NoTelemetry:
    def uploaded_bytes(self, count: int) -> None:
        pass

    def job_finished(self, seconds: float, state: str) -> None:
        pass


class RateBudget:
    """At most ``per_minute`` requests in any minute (a token bucket refilled continuously)."""

    def __init__(self, per_minute: int, clock: Clock) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(1, per_minute // 6))  # bursts of up to ten seconds' worth
        self.tokens = self.capacity
        self.clock = clock
        self.last = clock.now()
        self._lock = threading.Lock()

    def available(self) -> float:
        """Requests that may be made now."""
        with self._lock:
            return min(self.capacity, self.tokens + (self.clock.now() - self.last) * self.rate)

    def seconds_until_available(self) -> float:
        tokens = self.available()
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def take(self) -> float:
        """Spend one request; returns 0, or how many seconds until one is available (nothing spent)."""
        with self._lock:
            now = self.clock.now()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate


class ApiGate:
    """Closed while DeepVA refuses our API key: every stage that talks to the API rests, instead of each file in turn
    meeting the same 401. The daemon opens it again when the key changes or on SIGHUP."""

    def __init__(self) -> None:
        self._reason: str | None = None
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._reason is None

    @property
    def reason(self) -> str | None:
        return self._reason

    def close(self, reason: str) -> None:
        with self._lock:
            if self._reason is None:
                log.error("api_paused", reason=reason, note="fix the key, then change the key file or send SIGHUP")
            self._reason = reason

    def open(self) -> None:
        with self._lock:
            if self._reason is not None:
                log.warning("api_resumed")
            self._reason = None


@dataclass
class Services:
    config: Config
    ledger: Ledger
    client: DeepVA
    clock: Clock
    rng: random.Random = field(default_factory=random.Random)
    gate: ApiGate = field(default_factory=ApiGate)
    telemetry: Telemetry = field(default_factory=NoTelemetry)
    transfers: Transfers = field(default_factory=Transfers)
    api_failing_for: Callable[[], float | None] = lambda: None
    """Seconds every API call has failed for (None: it answers); retries that do not count grow with the outage."""
    upload_throttle: Throttle | None = field(init=False)
    """One bandwidth cap shared by every upload (``max_upload_mbps``)."""
    poll_budget: RateBudget = field(init=False)
    """The ceiling on job-status requests per minute."""
    halted: str | None = None
    """Why no stage may take work at all (the ledger file was removed or replaced under us), or None."""

    def __post_init__(self) -> None:
        self.use(self.config)

    def use(self, config: Config) -> None:
        """Take a (reloaded) config: the folders, their priorities and the shared limits follow it."""
        self.config = config
        self._folders = {folder_key(folder): folder for folder in config.folders}
        self.ledger.set_folder_priorities({key: folder.priority for key, folder in self._folders.items()})
        mbps = config.max_upload_mbps
        self.upload_throttle = Throttle(mbps * 1e6 / 8) if mbps else None
        self.poll_budget = RateBudget(config.max_requests_per_minute, self.clock)

    def knows_folder(self, asset: Asset) -> bool:
        """False once a reload removed the row's folder (the runner parks such rows)."""
        return asset.folder in self._folders

    def folder(self, asset: Asset) -> FolderConfig:
        """The current config of the row's folder."""
        return self._folders[asset.folder]

    def path_of(self, asset: Asset) -> Path:
        """Where the row's file is on this node: its folder's path here, and its path in the folder."""
        return self.folder(asset).path.absolute() / asset.relpath

    def folder_named(self, key: str) -> FolderConfig | None:
        """The current config of the folder the ledger names so, if it is still watched."""
        return self._folders.get(key)


def folder_key(folder: FolderConfig) -> str:
    """How the ledger names a folder: its ``id``, or else its absolute path as configured."""
    return folder.id if folder.id is not None else str(folder.path.absolute())
