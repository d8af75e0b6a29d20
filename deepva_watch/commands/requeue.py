"""``retry``, ``reprocess`` and ``forget``: the only commands that change the ledger, each row by one conditional UPDATE.

They are safe while the daemon runs because every change here, like every change the daemon makes, only lands if the
row is still in the state we read: if a worker moved it in between, our change is refused and we say so. Rows in a
working state (a worker is uploading, submitting or publishing them right now) are never touched. Where ``retry`` and
``reprocess`` send a file is decided in :mod:`deepva_watch.flow.requeue`, which the status page's buttons use too.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from deepva_watch.commands.common import (
    EXIT_FAILURE, EXIT_OK, LedgerPath, emit_json, ledger_path, load, open_ledger,
)
from deepva_watch.config import Config
from deepva_watch.flow.requeue import Refusal, Target, reprocess_target, requeue, retry_target
from deepva_watch.ledger import Asset, Ledger
from deepva_watch.states import State


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
    done = requeue(ledger, asset, decision)
    return Result(shown, asset.asset_id, done.done, done.detail, done.from_state, done.to_state)


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
