"""The one generic runner: claim due rows for a stage, run the stage's step on each, commit what it decided.

A stage is a plain function of ``(services, asset) -> Outcome``; it never writes to the ledger itself. Keeping the
commit here means every stage gets the same retry policy, the same one-line-per-transition log, and the same rule that
a transition only lands if the row is still where the step found it.
"""

from __future__ import annotations

import contextvars
import random
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

import structlog

from deepva_watch import ledger as states
from deepva_watch.config import Config, FolderConfig
from deepva_watch.ledger import Asset, Ledger, TransitionLost

log = structlog.get_logger("deepva_watch.pipeline")

#: A step that keeps failing is retried with exponential backoff (with jitter) and then parked as ``failed``
#: (retryable) for a person to look at; the backoff is stored in the ledger, so it survives restarts.
MAX_ATTEMPTS = 10
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 900.0


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch; what the ledger stores."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


# -- what a step can decide ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Advance:
    """The step is done: move to ``to`` and record ``changes``."""

    to: str
    changes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Wait:
    """Nothing wrong, just not yet (still settling, job still running): look again at ``until``."""

    until: float
    changes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Retry:
    """The step failed in a way that may pass: try again after a backoff (or after ``delay`` if the server said so).

    ``counts`` is False for failures that say nothing about this file (the API key was refused, DeepVA is down), so
    that an outage cannot use up a file's attempts.
    """

    error: str
    delay: float | None = None
    counts: bool = True
    changes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fail:
    """The step failed for good (or until a person intervenes)."""

    error: str
    retryable: bool = False
    changes: Mapping[str, Any] = field(default_factory=dict)


Outcome = Advance | Wait | Retry | Fail


def gone(reason: str = "the file disappeared") -> Advance:
    return Advance(states.GONE, {"last_error": reason})


# -- what a step can use ---------------------------------------------------------------------------------------------


class JobCache:
    """Jobs the tracker just fetched, kept for the publisher so it need not fetch them again.

    Only an optimisation: after a restart the cache is empty and the publisher asks the API.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def put(self, asset_id: str, job: Any) -> None:
        with self._lock:
            self._jobs[asset_id] = job

    def pop(self, asset_id: str) -> Any | None:
        with self._lock:
            return self._jobs.pop(asset_id, None)


@dataclass
class Services:
    """Everything a step may touch, injected so tests can substitute the clock, the client or the paths."""

    config: Config
    ledger: Ledger
    client: Any  # deepva_watch.deepva.DeepVAClient; Any keeps this module free of HTTP imports
    clock: Clock
    jobs: JobCache = field(default_factory=JobCache)
    rng: random.Random = field(default_factory=random.Random)

    def folder(self, asset: Asset) -> FolderConfig:
        return folder_by_key(self.config)[asset.folder]


def folder_key(folder: FolderConfig) -> str:
    """How the ledger names a folder: its absolute path as configured."""
    return str(folder.path.absolute())


def folder_by_key(config: Config) -> dict[str, FolderConfig]:
    return {folder_key(folder): folder for folder in config.folders}


# -- stages and their runner -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One step of the flow.

    ``takes`` are the states it picks rows up from; a stage with a ``working`` state claims rows into it (so several
    workers may run it), a stage without one must run on a single worker. ``home`` says which state a row returns to
    when the step says Wait or Retry (by default the first of ``takes``).
    """

    name: str
    takes: tuple[str, ...]
    step: Callable[[Services, Asset], Outcome]
    working: str | None = None
    workers: Callable[[Config], int] = lambda config: 1
    batch: int = 32
    home: Callable[[Asset], str] | None = None

    def home_of(self, asset: Asset) -> str:
        return self.home(asset) if self.home else self.takes[0]


def backoff(attempts: int, rng: random.Random) -> float:
    """Exponential backoff with full jitter: spreads retries of many files so an outage ends without a stampede."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class StageRunner:
    """Runs one stage on one thread: claim, step, commit, sleep until the next row is due or someone wakes us."""

    IDLE_SECONDS = 1.0

    def __init__(self, stage: Stage, services: Services, stop: threading.Event, on_commit: Callable[[str], None]) -> None:
        self.stage = stage
        self.services = services
        self.stop = stop
        self.on_commit = on_commit
        self.wakeup = threading.Event()
        self.heartbeat = time.monotonic()

    def run_forever(self) -> None:
        while not self.stop.is_set():
            self.heartbeat = time.monotonic()
            try:
                worked = self.run_once()
            except Exception:  # the ledger itself failed (disk full, locked): keep the thread, try again shortly
                log.error("stage_error", stage=self.stage.name, error=traceback.format_exc(limit=5))
                worked = 0
            if worked:
                continue
            self.wakeup.wait(self._idle_seconds())
            self.wakeup.clear()

    def _idle_seconds(self) -> float:
        due = self.services.ledger.next_due_at(self.stage.takes)
        if due is None:
            return self.IDLE_SECONDS
        return max(0.01, min(self.IDLE_SECONDS, due - self.services.clock.now()))

    def run_once(self) -> int:
        """Process the rows due now; returns how many. Tests call this directly for deterministic runs."""
        now = self.services.clock.now()
        ledger = self.services.ledger
        if self.stage.working:
            assets = ledger.claim(self.stage.takes, self.stage.working, now, 1)
        else:
            assets = ledger.due(self.stage.takes, now, self.stage.batch)
        for asset in assets:
            if self.stop.is_set() and self.stage.working:
                ledger.transition(asset, asset.state, self.stage.home_of(asset), now)  # hand it back untouched
                continue
            self.heartbeat = time.monotonic()
            self.process(asset)
        return len(assets)

    def process(self, asset: Asset) -> Asset | None:
        bound = structlog.contextvars.bound_contextvars(
            asset_id=asset.asset_id, folder=asset.folder, path=asset.relpath, job_id=asset.job_id
        )
        with bound:
            started = time.monotonic()
            try:
                outcome = self.stage.step(self.services, asset)
            except Exception as error:  # a bug must not lose the file: it is retried and, in the end, parked
                log.error("step_crashed", stage=self.stage.name, error=repr(error)[:500], trace=traceback.format_exc(limit=8))
                outcome = Retry(f"internal error in {self.stage.name}: {error!r}"[:500])
            return self.commit(asset, outcome, (time.monotonic() - started) * 1000)

    def commit(self, asset: Asset, outcome: Outcome, elapsed_ms: float) -> Asset | None:
        ledger, now = self.services.ledger, self.services.clock.now()
        home = self.stage.home_of(asset)
        changes: dict[str, Any] = dict(outcome.changes)
        if isinstance(outcome, Advance):
            target = outcome.to
            changes.setdefault("attempts", 0)
            changes.setdefault("next_attempt_at", now)
            if target not in states.FINAL_STATES:
                changes.setdefault("last_error", None)
        elif isinstance(outcome, Wait):
            target = home
            changes["next_attempt_at"] = outcome.until
        elif isinstance(outcome, Retry):
            attempts = asset.attempts + (1 if outcome.counts else 0)
            if attempts >= MAX_ATTEMPTS:
                target = states.FAILED
                changes.update(attempts=attempts, last_error=outcome.error, error_retryable=1)
            else:
                target = home
                delay = outcome.delay if outcome.delay is not None else backoff(max(attempts, 1), self.services.rng)
                changes.update(attempts=attempts, next_attempt_at=now + delay, last_error=outcome.error)
        else:
            target = states.FAILED
            changes.update(last_error=outcome.error, error_retryable=int(outcome.retryable))
        try:
            updated = ledger.transition(asset, asset.state, target, now, **changes)
        except TransitionLost:
            log.info("transition_lost", stage=self.stage.name, state=asset.state)
            return None
        if target != asset.state and not isinstance(outcome, Wait):
            fields: dict[str, Any] = {"from": asset.state, "to": target, "ms": round(elapsed_ms, 1), "attempt": updated.attempts}
            if updated.job_id:
                fields["job_id"] = updated.job_id
            if updated.last_error and target in (states.FAILED, states.REJECTED, home):
                fields["error"] = updated.last_error
            level = log.warning if target in (states.FAILED, states.REJECTED) or isinstance(outcome, Retry) else log.info
            level("transition", stage=self.stage.name, **fields)
        self.on_commit(target)
        return updated


def run_in_thread(name: str, target: Callable[[], None]) -> threading.Thread:
    """Start a worker thread inside a copy of the current context, so bound log fields follow the work."""
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(target,), name=name, daemon=True)
    thread.start()
    return thread
