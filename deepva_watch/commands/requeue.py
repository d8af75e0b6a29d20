"""``retry``, ``reprocess`` and ``forget``: the only commands that change the ledger, each row by one conditional UPDATE.

They are safe while the daemon runs because every change here, like every change the daemon makes, only lands if the
row is still in the state we read: if a worker moved it in between, our change is refused and we say so. Rows in a
working state (a worker is uploading, submitting or publishing them right now) are never touched.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from deepva_watch.commands.common import (
    EXIT_FAILURE, EXIT_OK, LedgerPath, emit_json, ledger_path, load, open_ledger,
)
from deepva_watch.config import Config
from deepva_watch.flow import folder_key
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


@dataclass(frozen=True)
class Result:
    path: str
    asset_id: str | None
    done: bool
    detail: str
    from_state: str | None = None
    to_state: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "asset_id": self.asset_id, "done": self.done, "from": self.from_state,
                "to": self.to_state, "detail": self.detail}


def _apply(ledger: Ledger, asset: Asset, decision: Target | Refusal, shown: str) -> Result:
    if isinstance(decision, Refusal):
        return Result(shown, asset.asset_id, False, decision.reason, asset.state)
    now = time.time()
    changes = {"attempts": 0, "next_attempt_at": now, "last_error": None, "error_retryable": None, "failed_in": None,
               **decision.changes}
    try:
        ledger.transition(asset, asset.state, decision.state, now, stage="operator", **changes)
    except TransitionLost:
        return Result(shown, asset.asset_id, False, "the daemon moved it on meanwhile; look again", asset.state)
    return Result(shown, asset.asset_id, True, decision.why, asset.state, decision.state)


def _named(config: Config, ledger: Ledger, paths: Sequence[str]) -> list[tuple[LedgerPath, Asset | None]]:
    named = []
    for given in paths:
        where = ledger_path(config, given)
        named.append((where, ledger.latest_version(where.folder, where.relpath)))
    return named


def retry(args: argparse.Namespace) -> int:
    config = load(args)
    ledger = open_ledger(config, readonly=False)
    if args.paths:
        results = _requeue_named(config, ledger, args.paths, retry_target, "not in the ledger")
    else:
        results = [_apply(ledger, asset, retry_target(asset, config), f"{asset.folder}/{asset.relpath}")
                   for asset in ledger.query(states=[State.FAILED], limit=args.limit)]
    return _report(args, "retry", results)


def reprocess(args: argparse.Namespace) -> int:
    config = load(args)
    ledger = open_ledger(config, readonly=False)
    results = _requeue_named(config, ledger, args.paths, reprocess_target,
                             "not in the ledger (the daemon will find it by itself)")
    return _report(args, "reprocess", results)


def _requeue_named(
    config: Config, ledger: Ledger, paths: Sequence[str], target: Callable[[Asset, Config], Target | Refusal],
    when_unknown: str,
) -> list[Result]:
    """Requeue each named file's newest version to ``target(asset, config)``, or say why not."""
    results = []
    for where, asset in _named(config, ledger, paths):
        if asset is None:
            results.append(Result(where.given, None, False, when_unknown))
        else:
            results.append(_apply(ledger, asset, target(asset, config), where.given))
    return results


def forget(args: argparse.Namespace) -> int:
    config = load(args)
    ledger = open_ledger(config, readonly=False)
    results = []
    for where, asset in _named(config, ledger, args.paths):
        if asset is None:
            results.append(Result(where.given, None, False, "not in the ledger"))
            continue
        removed = ledger.forget_idle(where.folder, where.relpath)
        if removed:
            results.append(Result(where.given, asset.asset_id, True, f"{removed} version(s) removed", asset.state))
        else:
            results.append(Result(where.given, asset.asset_id, False,
                                  "the daemon is working on it right now; try again in a moment", asset.state))
    return _report(args, "forget", results)


def _report(args: argparse.Namespace, command: str, results: list[Result]) -> int:
    if args.json:
        emit_json({"command": command, "results": [result.as_json() for result in results],
                   "changed": sum(result.done for result in results)})
    else:
        if not results:
            print(f"{command}: nothing to do")
        for result in results:
            if result.done:
                moved = f"{result.from_state} → {result.to_state}" if result.to_state else result.from_state
                print(f"{command}: {result.path}: {moved}; {result.detail}")
            else:
                print(f"{command}: {result.path}: not changed: {result.detail}")
    return EXIT_OK if all(result.done for result in results) else EXIT_FAILURE


__all__ = ["forget", "reprocess", "reprocess_target", "retry", "retry_target"]
