"""Where an operator's ``retry`` or ``reprocess`` sends a file, and the one transition that takes it there.

Shared by the ``retry``/``reprocess`` commands and the status page's buttons, so a file goes back the same way
whoever asks. The change lands only if the row is still in the state it was read in, like every change the daemon
makes: if a worker moved it in between, it is refused and the caller says so. Rows in a working state (a worker is
uploading, submitting or publishing them right now) are never touched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from deepva_watch.config import Config
from deepva_watch.flow.services import folder_key
from deepva_watch.ledger import Asset, Ledger, TransitionLost
from deepva_watch.sources import source_for
from deepva_watch.states import AT_DEEPVA, HOME, NEEDS_NEW_JOB, STAGE_ENTRY, UNSUBMITTED, State, without_job, without_storage

_IN_FLIGHT = (*AT_DEEPVA, State.COMPLETED, State.JOB_FAILED)


@dataclass(frozen=True)
class Target:
    state: State
    changes: Mapping[str, Any] = field(default_factory=dict)
    why: str = ""


@dataclass(frozen=True)
class Refusal:
    reason: str


@dataclass(frozen=True)
class Requeued:
    """What became of one request: done (``from_state → to_state``, ``detail`` says what happens next) or not (and
    ``detail`` says why)."""

    done: bool
    detail: str
    from_state: str | None = None
    to_state: str | None = None


def _new_job(asset: Asset, config: Config) -> Target:
    """Back to just before job creation, or before the upload when the uploaded copy may be gone."""
    folder = {folder_key(folder): folder for folder in config.folders}.get(asset.folder)
    uploads = folder is None or source_for(folder).uploads
    if asset.storage_url and not (config.delete_storage_after_completion and uploads):
        return Target(State.UPLOADED, without_job(), "a new job will be created")
    return Target(State.ACCEPTED, {**without_job(), **without_storage()}, "it will be uploaded again and get a new job")


def retry_target(asset: Asset, config: Config) -> Target | Refusal:
    """Back to the start of the stage the file failed in (``failed_in``)."""
    if asset.state != State.FAILED:
        return Refusal(f"not failed (it is {asset.state})")
    stage = asset.failed_in or "settle"
    if stage in NEEDS_NEW_JOB:  # DeepVA's job failed: only a new job can help
        return _new_job(asset, config)
    entry = STAGE_ENTRY.get(stage, State.SETTLING)
    if entry in (State.SETTLING, State.SETTLED):
        return Target(State.SETTLING, {"stable_since": time.time()}, "it will be checked again")
    why = {State.ACCEPTED: "it will be uploaded again", State.UPLOADED: "its job will be created",
           State.SUBMITTED: "its job will be tracked again", State.COMPLETED: "its sidecars will be written again"}
    return Target(entry, {"published_at": None} if entry == State.COMPLETED else {}, why.get(entry, ""))


def reprocess_target(asset: Asset, config: Config) -> Target | Refusal:
    """A new DeepVA job for the file, whatever happened before; refused while something is still under way."""
    if asset.state in HOME:
        return Refusal(f"the daemon is working on it right now ({asset.state}); try again in a moment")
    if asset.state in _IN_FLIGHT:
        return Refusal(f"its DeepVA job is still under way ({asset.state}); wait for it to finish")
    if asset.state in UNSUBMITTED:
        return Refusal(f"already queued ({asset.state})")
    if asset.state == State.GONE:
        return Refusal("the file is gone")
    if asset.state == State.SUPERSEDED:
        return Refusal("a newer version of the file is in the ledger")
    if asset.state == State.REJECTED or asset.kind is None:
        return Target(State.SETTLING, {**without_job(), **without_storage(), "stable_since": time.time()},
                      "it will be checked again")
    return _new_job(asset, config)


def requeue(ledger: Ledger, asset: Asset, decision: Target | Refusal) -> Requeued:
    """Apply a decision of :func:`retry_target` or :func:`reprocess_target`: one conditional transition, its attempts
    and error cleared, due at once."""
    if isinstance(decision, Refusal):
        return Requeued(False, decision.reason, asset.state)
    now = time.time()
    changes = {"attempts": 0, "next_attempt_at": now, "last_error": None, "error_retryable": None, "failed_in": None,
               **decision.changes}
    try:
        ledger.transition(asset, asset.state, decision.state, now, stage="operator", **changes)
    except TransitionLost:
        return Requeued(False, "the daemon moved it on meanwhile; look again", asset.state)
    return Requeued(True, decision.why, asset.state, decision.state)
