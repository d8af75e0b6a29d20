"""The one generic runner: take the rows a stage may work on, apply its step to each, commit what the steps decided.

Keeping the commit here gives every stage the same retry policy, the same log line per transition (naming the file),
the same history, and the same rule that a transition only lands if the row is still where the step found it. What a
batch decided is committed together, in one transaction; a crash before that commit repeats the steps, which every
stage allows (a look or a poll is taken again, an upload's leftovers are removed first, a job is found by its tag,
sidecars are written the same).
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from deepva_watch import states
from deepva_watch.flow.outcomes import Advance, Changed, Fail, Outcome, Retry, Wait
from deepva_watch.flow.policy import MAX_ATTEMPTS, backoff, outage_backoff
from deepva_watch.flow.services import Services
from deepva_watch.flow.stage import AnyStage
from deepva_watch.ledger import Asset, Move, Quota
from deepva_watch.log import scrub
from deepva_watch.states import State

log = structlog.get_logger("deepva_watch.flow")

#: A row whose folder a reload removed rests this long before it is looked at again (nothing is lost).
PARKED_SECONDS = 3600.0

#: Hears every row that lands in a state, due again at the given time (the daemon wakes the stages that take it).
OnCommit = Callable[[State, float], None]


@dataclass(frozen=True)
class Decision:
    asset: Asset
    outcome: Outcome
    elapsed_ms: float


class StageRunner:
    """Runs one stage on one thread: take rows, step, commit, rest until the next row is due or someone wakes it."""

    IDLE_SECONDS = 1.0

    def __init__(self, stage: AnyStage, services: Services, stop: threading.Event, on_commit: OnCommit) -> None:
        self.stage = stage
        self.services = services
        self.stop = stop
        self.on_commit = on_commit
        self.wakeup = threading.Event()
        self.heartbeat = time.monotonic()
        self.current: Asset | None = None
        """The row being stepped right now, for the watchdog (a long upload shows progress of its own)."""
        self.at_capacity = False
        self.gathering_until = 0.0
        self.idle = False
        self.sleeps_until = 0.0

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
            timeout = self._idle_seconds()
            self.sleeps_until = self.services.clock.now() + timeout
            self.idle = True
            self.wakeup.wait(timeout)
            self.heartbeat = time.monotonic()  # before it stops counting as idle
            self.idle = False
            self.wakeup.clear()

    def wanted_by(self, due_at: float | None) -> bool:
        """Whether a row due at ``due_at`` is a reason to wake this runner: not while it rests and will look again by
        then anyway."""
        return due_at is None or not self.idle or due_at <= self.sleeps_until

    def _idle_seconds(self) -> float:
        admission = self.stage.admission
        if self.gathering_until:
            return max(0.01, min(self.IDLE_SECONDS, self.gathering_until - self.services.clock.now()))
        if self.at_capacity:
            if admission.rest is not None:
                return max(0.01, min(self.IDLE_SECONDS, admission.rest(self.services)))
            return self.IDLE_SECONDS
        due = self.services.ledger.next_due_at(self.stage.takes)
        if due is None:
            return self.IDLE_SECONDS
        return max(0.01, min(self.IDLE_SECONDS, due - self.services.clock.now()))

    # -- one round ---------------------------------------------------------------------------------------------------

    def room(self) -> tuple[int, Quota | None]:
        """How many rows the stage may take now, and the strict quota its claim must respect."""
        admission = self.stage.admission
        if self.services.halted or (admission.needs_api and not self.services.gate.is_open):
            return 0, None
        if admission.one_node and not self.services.ledger.leads(self.stage.name):
            return 0, None
        room = admission.room(self.services) if admission.room is not None else self.stage.batch
        quota = admission.quota(self.services.config) if admission.quota is not None else None
        if quota is not None:
            room = min(room, quota.limit - self.services.ledger.count_in(quota.states))
        return room, quota

    def run_once(self) -> int:
        """Process the rows due now; returns how many. Tests call this directly for deterministic runs."""
        room, quota = self.room()
        self.at_capacity = room <= 0
        if self.at_capacity:
            return 0
        now = self.services.clock.now()
        ledger = self.services.ledger
        stage = self.stage
        if stage.working is not None:
            share = max(1, room // max(1, stage.workers(self.services.config)))  # leave room for the other workers
            assets = ledger.claim(stage.takes, stage.working, now, min(share, stage.batch), stage=stage.name,
                                  quota=quota, max_bytes=stage.claim_bytes)
        elif stage.together:
            assets = self._all_once_due(now, min(room, stage.batch))
        else:
            assets = ledger.due(stage.takes, now, min(room, stage.batch))
        if not assets:
            return 0
        try:
            context = stage.begin(self.services, assets)
        except Exception as error:  # a bug in a batch's preparation: hand the rows back, try again later
            log.error("begin_failed", stage=stage.name, error=repr(error)[:300], trace=traceback.format_exc(limit=6))
            self._hand_back(assets)
            return 0
        decided: list[Decision] = []
        for index, asset in enumerate(assets):
            # Stopping, halted, or the key was refused while this batch ran: the rest must not each meet the same 401.
            if self.stop.is_set() or self.services.halted or (
                    stage.admission.needs_api and not self.services.gate.is_open):
                self._hand_back(assets[index:])
                break
            decided.append(self.decide(context, asset))
        self.commit(decided)
        return len(assets)

    def _all_once_due(self, now: float, limit: int) -> list[Asset]:
        """Every row of the stage, once the first is due and those due soon after it are due as well."""
        ledger, takes = self.services.ledger, self.stage.takes
        first = ledger.next_due_at(takes)
        if first is None or first > now:
            return []
        burst = [asset.next_attempt_at for asset in ledger.due(takes, first + self.stage.together, limit)]
        if max(burst, default=first) > now:
            self.gathering_until = max(burst)
            return []
        self.gathering_until = 0.0
        return ledger.due(takes, math.inf, limit)

    def _hand_back(self, assets: list[Asset]) -> None:
        if self.stage.working is not None:
            moves = [Move(asset, asset.state, self.stage.home_of(asset)) for asset in assets]
            self.services.ledger.transition_many(moves, self.services.clock.now(), stage=self.stage.name)

    def decide(self, context: Any, asset: Asset) -> Decision:
        if not self.services.knows_folder(asset):  # removed by a reload: park it, lose nothing
            return Decision(asset, Wait(self.services.clock.now() + PARKED_SECONDS), 0.0)
        bound = structlog.contextvars.bound_contextvars(
            asset_id=asset.asset_id, folder=asset.folder, path=asset.relpath, job_id=asset.job_id)
        with bound:
            self.current, self.heartbeat = asset, time.monotonic()
            started = time.monotonic()
            try:
                outcome = self.stage.step(context, asset)
                if isinstance(outcome, Advance) and not states.allowed(asset.state, outcome.to):
                    raise AssertionError(f"{self.stage.name} may not move a file from {asset.state} to {outcome.to}")
            except Exception as error:  # a bug must not lose the file: it is retried and, in the end, parked
                log.error("step_crashed", stage=self.stage.name, error=repr(error)[:500],
                          trace=traceback.format_exc(limit=8))
                outcome = Retry(f"internal error in {self.stage.name}: {error!r}"[:500])
            finally:
                self.current = None
            return Decision(asset, outcome, (time.monotonic() - started) * 1000)

    # -- committing --------------------------------------------------------------------------------------------------

    def commit(self, decided: list[Decision]) -> None:
        plain: list[Decision] = []
        for decision in decided:
            if isinstance(decision.outcome, Changed):
                self._record_change(decision)
            else:
                plain.append(decision)
        if not plain:
            return
        moves = [self.move_for(decision.asset, decision.outcome) for decision in plain]
        landed = self.services.ledger.transition_many(moves, self.services.clock.now(), stage=self.stage.name)
        for decision, updated in zip(plain, landed, strict=True):
            self.landed(decision, updated)

    def _record_change(self, decision: Decision) -> None:
        """The file is another version now: a settling row takes it; any other row gives way to a new version."""
        asset, outcome = decision.asset, decision.outcome
        assert isinstance(outcome, Changed)
        now = self.services.clock.now()
        self.services.ledger.observe(asset.folder, asset.relpath, outcome.size, outcome.mtime_ns, now)
        if asset.state == State.SETTLING:
            self.on_commit(State.SETTLING, now)
            return
        move = Move(asset, asset.state, State.SUPERSEDED, {"last_error": outcome.why})
        (updated,) = self.services.ledger.transition_many([move], now, stage=self.stage.name)
        self.landed(Decision(asset, Advance(State.SUPERSEDED, move.changes), decision.elapsed_ms), updated)
        self.on_commit(State.SETTLING, now)

    def move_for(self, asset: Asset, outcome: Outcome) -> Move:
        """Where the row goes and what is recorded, by the shared retry policy."""
        now = self.services.clock.now()
        home = self.stage.home_of(asset)
        changes: dict[str, Any] = dict(outcome.changes) if not isinstance(outcome, Changed) else {}
        if isinstance(outcome, Advance):
            target = outcome.to
            changes.setdefault("attempts", 0)
            changes.setdefault("next_attempt_at", now)
            if target not in states.FINAL:
                changes.setdefault("last_error", None)
        elif isinstance(outcome, Wait):
            target = home
            changes["next_attempt_at"] = outcome.until
        elif isinstance(outcome, Retry):
            attempts = asset.attempts + (1 if outcome.counts else 0)
            if attempts >= MAX_ATTEMPTS:
                target = State.FAILED
                changes.update(attempts=attempts, last_error=outcome.error, error_retryable=1,
                               failed_in=self.stage.name)
            else:
                target = home
                delay = outcome.delay if outcome.delay is not None else backoff(max(attempts, 1), self.services.rng)
                if not outcome.counts and outcome.delay is None:
                    delay = max(delay, outage_backoff(self.services.api_failing_for(), self.services.rng))
                changes.update(attempts=attempts, next_attempt_at=now + delay, last_error=outcome.error)
        else:
            assert isinstance(outcome, Fail)
            target = State.FAILED
            changes.update(last_error=outcome.error, error_retryable=int(outcome.retryable), failed_in=self.stage.name)
        target = self._handing_on(asset, target, changes)
        for column in ("last_error", "job_errors"):  # server text may echo a secret: never store it
            if isinstance(changes.get(column), str):
                changes[column] = scrub(changes[column])
        return Move(asset, asset.state, target, changes)

    def _handing_on(self, asset: Asset, target: State, changes: dict[str, Any]) -> State:
        """A file about to end ``published`` or ``failed`` goes ``handing_on`` first when its folder has actions for
        that outcome (the ``act`` stage runs them; failing there never starts ``on_failed``)."""
        if target not in (State.PUBLISHED, State.FAILED) or not self.stage.hands_on \
                or not self.services.knows_folder(asset):
            return target
        outcome = "done" if target == State.PUBLISHED else "failed"
        if self.services.folder(asset).actions_for(outcome) is None:
            return target
        changes.update(outcome=outcome, actions_folder=asset.folder, actions_done=0, move_target=None, attempts=0,
                       next_attempt_at=self.services.clock.now())
        return State.HANDING_ON

    def landed(self, decision: Decision, updated: Asset | None) -> None:
        """Log the transition, naming the file, and wake the stages that take its rows."""
        asset, outcome = decision.asset, decision.outcome
        identity = {"folder": asset.folder, "path": asset.relpath, "asset_id": asset.asset_id}
        if updated is None:
            log.info("transition_lost", stage=self.stage.name, state=asset.state, **identity)
            return
        if updated.state != asset.state or isinstance(outcome, (Retry, Fail)):
            fields: dict[str, Any] = {"from": asset.state, "to": updated.state, "ms": round(decision.elapsed_ms, 1),
                                      "attempt": updated.attempts, **identity}
            if updated.job_id:
                fields["job_id"] = updated.job_id
            if updated.last_error and updated.state != State.PUBLISHED:
                fields["error"] = updated.last_error
            failing = updated.state in (State.FAILED, State.REJECTED) or isinstance(outcome, Retry)
            (log.warning if failing else log.info)("transition", stage=self.stage.name, **fields)
        self.on_commit(updated.state, updated.next_attempt_at)


def wake(runners: list[StageRunner], state: State, due_at: float | None = None) -> None:
    """Wake one resting worker of each stage that may now have work: one row needs one worker, and a busy worker
    looks for more by itself before it rests. A worker already woken and not yet running is passed over, so rows
    landing together wake as many workers as there are rows; a row not due before the worker would look again anyway
    wakes nobody, but a row that frees room (a finished job) always wakes the stage waiting for it."""
    woken: set[str] = set()
    for runner in runners:
        stage = runner.stage
        frees = state in stage.admission.freed_by
        if stage.name in woken or not (state in stage.takes or frees):
            continue
        if not frees and not runner.wanted_by(due_at):
            continue
        if runner.idle and stage.working is not None and runner.wakeup.is_set():
            continue
        if runner.idle or stage.working is None:
            runner.wakeup.set()
            woken.add(stage.name)


def run_in_thread(name: str, target: Callable[[], None]) -> threading.Thread:
    """Start a worker thread inside a copy of the current context, so bound log fields follow the work."""
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(target,), name=name, daemon=True)
    thread.start()
    return thread
