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
from deepva_watch.ledger import Asset, Ledger, Move, Quota, TransitionLost
from deepva_watch.log import scrub

log = structlog.get_logger("deepva_watch.pipeline")

#: A step that keeps failing is retried with exponential backoff (with jitter) and then parked as ``failed``
#: (retryable) for a person to look at; the backoff is stored in the ledger, so it survives restarts.
MAX_ATTEMPTS = 10
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 900.0
#: The longest a stage holds what its steps decided before committing it (see ``StageRunner.run_once``).
COMMIT_EVERY_SECONDS = 1.0


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
    """The step is done: move to ``to`` and record ``changes``; then, once that is committed, run ``then``.

    ``then`` is for work that would make the step impossible to repeat (deleting the DeepVA job whose results it
    fetched). Steps are committed in batches, and a crash before the commit repeats the step: done inside it, such
    work would leave the repeat nothing to fetch. Done after, a crash can only leave it undone.
    """

    to: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    then: Callable[[], object] | None = field(default=None, compare=False)


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
    """Jobs fetched in one place and wanted in another (a batch poll for the tracker, the tracker's final answer
    for the publisher), so that no job is fetched twice.

    Only an optimisation: after a restart the cache is empty and the consumer asks the API.
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

    def ids(self) -> set[str]:
        with self._lock:
            return set(self._jobs)


class RateBudget:
    """At most ``per_minute`` requests in any minute (a token bucket refilled continuously)."""

    def __init__(self, per_minute: int, clock: Clock) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(max(1, per_minute // 6))  # bursts of up to ten seconds' worth
        self.tokens = self.capacity
        self.clock = clock
        self.last = clock.now()
        self._lock = threading.Lock()

    def available(self) -> bool:
        """Whether a request could be spent now, without spending it."""
        return self.seconds_until_available() == 0

    def seconds_until_available(self) -> float:
        with self._lock:
            tokens = min(self.capacity, self.tokens + (self.clock.now() - self.last) * self.rate)
            return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def take(self) -> float:
        """Spend one request; returns 0, or how many seconds to wait before one is available (nothing spent)."""
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
    meeting the same 401 and using up its attempts. The daemon opens it again when the key changes or on SIGHUP."""

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


_current = threading.local()


def beat() -> None:
    """Tell the watchdog this worker is still making progress (a long upload calls this as bytes go out)."""
    runner = getattr(_current, "runner", None)
    if runner is not None:
        runner.heartbeat = time.monotonic()


@dataclass
class Services:
    """Everything a step may touch, injected so tests can substitute the clock, the client or the paths."""

    config: Config
    ledger: Ledger
    client: Any  # deepva_watch.deepva.DeepVAClient; Any keeps this module free of HTTP imports
    clock: Clock
    jobs: JobCache = field(default_factory=JobCache)
    polled: JobCache = field(default_factory=JobCache)
    rng: random.Random = field(default_factory=random.Random)
    upload_throttle: Any = None  # one bandwidth cap shared by every upload worker
    poll_budget: Any = None  # the ceiling on job-status requests per minute
    api_gate: ApiGate = field(default_factory=ApiGate)
    metrics: Any = None  # deepva_watch.service.metrics.Metrics, when the daemon runs with metrics
    publisher: Any = None  # deepva_watch.stages.publish_process.PublisherProcess; None: sidecars written in-process
    api_failing_for: Callable[[], float | None] = lambda: None
    """Seconds every API call has failed for (None: it answers); retries that do not count grow with the outage."""

    def folders(self) -> dict[str, FolderConfig]:
        """The configured folders by ledger key, built once per config (a reload swaps the config)."""
        folders = self._folders
        if folders is None or folders[0] is not self.config:
            folders = self._folders = (self.config, folder_by_key(self.config))
        return folders[1]

    def folder(self, asset: Asset) -> FolderConfig:
        return self.folders()[asset.folder]

    _folders: tuple[Config, dict[str, FolderConfig]] | None = field(default=None, init=False, repr=False)


def make_services(config: Config, ledger: Ledger, client: Any, clock: Clock) -> Services:
    """Services for a config: folder priorities registered, shared upload and polling limits in place."""
    from deepva_watch.deepva.upload import Throttle

    ledger.set_folder_priorities({folder_key(folder): folder.priority for folder in config.folders})
    throttle = Throttle(config.max_upload_mbps * 1e6 / 8) if config.max_upload_mbps else None
    return Services(config=config, ledger=ledger, client=client, clock=clock, upload_throttle=throttle,
                    poll_budget=RateBudget(config.max_requests_per_minute, clock))


def folder_key(folder: FolderConfig) -> str:
    """How the ledger names a folder: its absolute path as configured."""
    return str(folder.path.absolute())


def folder_by_key(config: Config) -> dict[str, FolderConfig]:
    return {folder_key(folder): folder for folder in config.folders}


# -- stages and their runner -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What a step decided for a row, not yet committed."""

    asset: Asset
    outcome: Outcome
    elapsed_ms: float


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
    claims: int = 1
    """Rows a worker of a ``working`` stage claims at once: more saves ledger writes on small steps; one keeps a long
    step from holding rows another worker could start on."""
    claim_bytes: int | None = None
    """Claim further rows only while the files already claimed hold less than this (uploads: many small images at
    once, but a long video alone)."""
    home: Callable[[Asset], str] | None = None
    capacity: Callable[[Services], int] | None = None
    """How many more rows the stage may take now (a window, a request budget); None: no limit."""
    quota: Callable[[Services], Quota] | None = None
    """A strict limit (max_active_jobs), counted inside each claim's statement so that workers never overshoot it."""
    prefetch: Callable[[Services, list[Asset]], None] | None = None
    """Called with a whole batch before its rows are stepped, so one API call can serve many rows."""
    wakes_on: tuple[str, ...] = ()
    """Further states whose arrival may let this stage work (a job finishing frees a slot for the next)."""
    uses_api: bool = False
    """Rests while the API gate is closed (the key was refused)."""
    rest: Callable[[Services], float] | None = None
    """With no capacity: how long until there may be some (a request budget refilling); None: until woken."""

    def home_of(self, asset: Asset) -> str:
        return self.home(asset) if self.home else self.takes[0]


def backoff(attempts: int, rng: random.Random) -> float:
    """Exponential backoff with full jitter: spreads retries of many files so an outage ends without a stampede."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** max(0, attempts - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def outage_backoff(failing_for: float | None, rng: random.Random) -> float:
    """While DeepVA is unreachable, each file waits about half as long as the outage has lasted so far (up to the
    backoff cap): requests thin out as an outage drags on, and none waits more than half the outage once it ends."""
    if not failing_for:
        return 0.0
    ceiling = min(BACKOFF_CAP_SECONDS, failing_for / 2)
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class StageRunner:
    """Runs one stage on one thread: claim, step, commit, sleep until the next row is due or someone wakes us."""

    IDLE_SECONDS = 1.0

    def __init__(
        self, stage: Stage, services: Services, stop: threading.Event, on_commit: Callable[[str, float], None]
    ) -> None:
        """``on_commit(state, due_at)`` hears every row that lands in ``state``, due again at ``due_at``."""
        self.stage = stage
        self.services = services
        self.stop = stop
        self.on_commit = on_commit
        self.wakeup = threading.Event()
        self.heartbeat = time.monotonic()
        self.at_capacity = False
        self.idle = False
        self.sleeps_until = 0.0

    def run_forever(self) -> None:
        _current.runner = self
        while not self.stop.is_set():
            self.heartbeat = time.monotonic()
            try:
                worked = self.run_once()
            except Exception:  # the ledger itself failed (disk full, locked): keep the thread, try again shortly
                log.error("stage_error", stage=self.stage.name, error=traceback.format_exc(limit=5))
                worked = 0
            if worked:
                continue
            timeout = self._idle_seconds()
            self.sleeps_until = self.services.clock.now() + timeout
            self.idle = True
            self.wakeup.wait(timeout)
            self.heartbeat = time.monotonic()  # before it stops counting as idle: see Daemon.stuck_workers
            self.idle = False
            self.wakeup.clear()

    def wanted_by(self, due_at: float | None) -> bool:
        """Whether a row due at ``due_at`` is a reason to wake this runner: not while it rests and will look again by
        then anyway (a job submitted now is first polled on the next grid time; waking the tracker for each would
        cost a look at the ledger and two thread switches per job, for nothing)."""
        return due_at is None or not self.idle or due_at <= self.sleeps_until

    def _idle_seconds(self) -> float:
        if self.at_capacity:  # rows are due but a quota is full: a finishing job wakes us, a budget refills in time
            if self.stage.rest is not None:
                return max(0.01, min(self.IDLE_SECONDS, self.stage.rest(self.services)))
            return self.IDLE_SECONDS
        due = self.services.ledger.next_due_at(self.stage.takes)
        if due is None:
            return self.IDLE_SECONDS
        return max(0.01, min(self.IDLE_SECONDS, due - self.services.clock.now()))

    def run_once(self) -> int:
        """Process the rows due now; returns how many. Tests call this directly for deterministic runs."""
        now = self.services.clock.now()
        ledger = self.services.ledger
        if self.stage.uses_api and not self.services.api_gate.is_open:
            self.at_capacity = True
            return 0
        room = self.stage.capacity(self.services) if self.stage.capacity else self.stage.batch
        quota = self.stage.quota(self.services) if self.stage.quota else None
        if quota is not None:
            room = min(room, quota.limit - ledger.count_in(quota.states))
        self.at_capacity = room <= 0
        if self.at_capacity:
            return 0
        if self.stage.working:
            share = max(1, room // max(1, self.stage.workers(self.services.config)))  # leave room for the other workers
            assets = ledger.claim(self.stage.takes, self.stage.working, now, min(share, self.stage.claims), quota,
                                  self.stage.claim_bytes)
        else:
            assets = ledger.due(self.stage.takes, now, min(room, self.stage.batch))
        if assets and self.stage.prefetch:
            try:
                self.stage.prefetch(self.services, assets)
            except Exception as error:  # a prefetch only saves requests; the steps still work without it
                log.warning("prefetch_failed", stage=self.stage.name, error=repr(error)[:300])
        # What the steps decide is committed together, at the end of the batch or once a second: under a backlog each
        # turn at the ledger's write lock is a wait behind the other stages. A crash before the commit repeats those
        # steps, which every stage allows: a look or a poll is simply taken again, a row left in a working state is
        # recovered (an upload's leftovers are removed first, a job is found by its tag), sidecars are rewritten the same.
        decided: list[Decision] = []
        since = now
        for asset in assets:
            # Stopping, or the key was refused while this batch ran: the rest must not each meet the same 401.
            if self.stop.is_set() or (self.stage.uses_api and not self.services.api_gate.is_open):
                if self.stage.working:
                    ledger.transition(asset, asset.state, self.stage.home_of(asset), now)  # hand it back untouched
                continue
            self.heartbeat = time.monotonic()
            decided.append(self.decide(asset))
            if self.services.clock.now() - since >= COMMIT_EVERY_SECONDS:
                self.commit_all(decided)
                decided, since = [], self.services.clock.now()
        self.commit_all(decided)
        return len(assets)

    def decide(self, asset: Asset) -> Decision:
        if asset.folder not in self.services.folders():  # removed by a reload: park it, lose nothing
            return Decision(asset, Wait(self.services.clock.now() + 3600), 0.0)
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
            return Decision(asset, outcome, (time.monotonic() - started) * 1000)

    def commit(self, decision: Decision) -> Asset | None:
        move = self.move_for(decision.asset, decision.outcome)
        try:
            updated = self.services.ledger.transition(move.asset, move.expected, move.to, self.services.clock.now(),
                                                      **move.changes)
        except TransitionLost:
            updated = None
        return self.landed(decision, updated)

    def commit_all(self, decided: list[Decision]) -> None:
        if len(decided) <= 1:  # one statement, no BEGIN/COMMIT around it
            for decision in decided:
                self.commit(decision)
            return
        moves = [self.move_for(decision.asset, decision.outcome) for decision in decided]
        for decision, updated in zip(decided, self.services.ledger.transition_many(moves, self.services.clock.now()), strict=True):
            self.landed(decision, updated)

    def move_for(self, asset: Asset, outcome: Outcome) -> Move:
        """Where the row goes and what is recorded, by the shared retry policy."""
        now = self.services.clock.now()
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
                if not outcome.counts and outcome.delay is None:
                    delay = max(delay, outage_backoff(self.services.api_failing_for(), self.services.rng))
                changes.update(attempts=attempts, next_attempt_at=now + delay, last_error=outcome.error)
        else:
            target = states.FAILED
            changes.update(last_error=outcome.error, error_retryable=int(outcome.retryable))
        for column in ("last_error", "job_errors"):  # server text may echo a secret: never store it
            if isinstance(changes.get(column), str):
                changes[column] = scrub(changes[column])
        return Move(asset, asset.state, target, changes)

    def landed(self, decision: Decision, updated: Asset | None) -> Asset | None:
        """Log the transition and wake the stages that take its rows; ``updated`` is None if the row had moved on."""
        asset, outcome = decision.asset, decision.outcome
        if updated is None:
            log.info("transition_lost", stage=self.stage.name, state=asset.state)
            return None
        target, home = updated.state, self.stage.home_of(asset)
        if target != asset.state and not isinstance(outcome, Wait):
            fields: dict[str, Any] = {"from": asset.state, "to": target, "ms": round(decision.elapsed_ms, 1), "attempt": updated.attempts}
            if updated.job_id:
                fields["job_id"] = updated.job_id
            if updated.last_error and target in (states.FAILED, states.REJECTED, home):
                fields["error"] = updated.last_error
            level = log.warning if target in (states.FAILED, states.REJECTED) or isinstance(outcome, Retry) else log.info
            level("transition", stage=self.stage.name, **fields)
        self.on_commit(target, updated.next_attempt_at)
        if isinstance(outcome, Advance) and outcome.then is not None and target == outcome.to:
            try:
                outcome.then()
            except Exception as error:  # the row has landed; what follows it must not undo that or stop the batch
                log.error("after_commit_failed", stage=self.stage.name, error=repr(error)[:500],
                          trace=traceback.format_exc(limit=8))
        return updated


def run_in_thread(name: str, target: Callable[[], None]) -> threading.Thread:
    """Start a worker thread inside a copy of the current context, so bound log fields follow the work."""
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(target,), name=name, daemon=True)
    thread.start()
    return thread
