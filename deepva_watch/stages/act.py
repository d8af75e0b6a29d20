"""ACT: a folder's ``on_done`` or ``on_failed`` actions, one committed step each, in the order move_to, exec, http.

A file about to end ``published`` or ``failed`` whose folder has actions for it comes here in ``handing_on`` (the
runner sends it). Each action that succeeds counts in the row (``actions_done``) with what it said (``last_action``,
also in the file's story), so a crash repeats at most the action under way and never one that completed; the last one
lands the row where it was going. An action that keeps failing is retried with the usual backoff and then parked
``failed`` (stage ``act``) with its reason; ``retry`` runs it again. Failing here never starts ``on_failed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from deepva_watch.config import Actions, FolderConfig
from deepva_watch.flow import Advance, Fail, Outcome, Retry, Services, folder_key
from deepva_watch.handoff.command import run_command
from deepva_watch.handoff.event import current_path, event_document, outcome_of
from deepva_watch.handoff.move import MoveRefused, move_together, plan_move, sidecar_target
from deepva_watch.handoff.post import post_event
from deepva_watch.ledger import Asset
from deepva_watch.states import State

log = structlog.get_logger("deepva_watch.act")

#: Commands and requests may take a while: two files are handed on at once.
ACT_WORKERS = 2


def steps_of(actions: Actions) -> list[str]:
    return [name for name, wanted in (("move_to", actions.move_to is not None), ("exec", bool(actions.exec)),
                                      ("http", actions.http is not None)) if wanted]


def act(services: Services, asset: Asset) -> Outcome:
    folder = services.folder_named(asset.actions_folder or asset.folder)
    actions = folder.actions_for(outcome_of(asset)) if folder is not None else None
    steps = steps_of(actions) if actions is not None else []
    if folder is None or actions is None or asset.actions_done >= len(steps):
        return _landed(asset, {})
    step = steps[asset.actions_done]
    if step == "move_to":
        return _move(services, folder, actions, asset, steps)
    if step == "exec":
        return _exec(services, actions, asset, steps)
    return _post(services, actions, asset, steps)


def _landed(asset: Asset, changes: dict[str, Any]) -> Advance:
    target = State.FAILED if outcome_of(asset) == "failed" else State.PUBLISHED
    return Advance(target, {**changes, "outcome": None, "actions_folder": None})


def _next(asset: Asset, steps: list[str], note: str, changes: dict[str, Any] | None = None) -> Advance:
    log.info("action_done", action=steps[asset.actions_done], note=note)
    done = {**(changes or {}), "actions_done": asset.actions_done + 1, "last_action": note}
    if asset.actions_done + 1 >= len(steps):
        return _landed(asset, done)
    return _onward(asset, done)


def _onward(asset: Asset, changes: dict[str, Any]) -> Advance:
    """Still handing on; a failed file keeps saying why it failed."""
    return Advance(State.HANDING_ON, {**changes, "last_error": asset.last_error})


def _move(services: Services, folder: FolderConfig, actions: Actions, asset: Asset, steps: list[str]) -> Outcome:
    assert actions.move_to is not None
    media = current_path(asset, _root(services, asset))
    sidecars = [Path(path) for path in (asset.xmp_path, asset.json_path) if path and Path(path).parent == media.parent]
    base = actions.move_to if actions.move_to.is_absolute() else folder.path.absolute() / actions.move_to
    try:
        if asset.move_target is None:  # the new name is committed before anything moves
            target = plan_move(media, sidecars, base / Path(asset.relpath).parent)
            return _onward(asset, {"move_target": str(target)})
        target = Path(asset.move_target)
        move_together(media, sidecars, target)
    except MoveRefused as error:
        return Fail(f"move_to: {error}")
    except OSError as error:
        return Retry(f"move_to: {error.strerror or error} ({error.filename or media})")
    moved: dict[str, Any] = {"move_target": None}
    for column, sidecar in (("xmp_path", asset.xmp_path), ("json_path", asset.json_path)):
        if sidecar and Path(sidecar) in sidecars:
            moved[column] = str(sidecar_target(Path(sidecar), media, target))
    return _next(asset, steps, f"moved to {target}", {**moved, **_follow(services, asset, target)})


def _follow(services: Services, asset: Asset, target: Path) -> dict[str, Any]:
    """Where the ledger has the file now: inside a watched folder it is that folder's file (so no scan finds it as
    new); anywhere else the row keeps its place and records the new location."""
    for folder in sorted(services.config.folders, key=lambda candidate: -len(candidate.path.absolute().parts)):
        root = folder.path.absolute()
        if target.is_relative_to(root):
            key, relpath = folder_key(folder), target.relative_to(root).as_posix()
            taken = any(row.size == asset.size and row.mtime_ns == asset.mtime_ns
                        for row in services.ledger.versions(key, relpath))
            if not taken:
                return {"folder": key, "relpath": relpath, "location": None}
    return {"location": str(target)}


def _variables(services: Services, asset: Asset) -> dict[str, str]:
    values = {"OUTCOME": outcome_of(asset), "PATH": str(current_path(asset, _root(services, asset))), "FOLDER": asset.folder,
              "RELPATH": asset.relpath, "ASSET_ID": asset.asset_id, "JOB_ID": asset.job_id or "",
              "XMP": asset.xmp_path or "", "JSON": asset.json_path or "",
              "ERROR": (asset.last_error or "") if outcome_of(asset) == "failed" else ""}
    return {f"DEEPVA_WATCH_{name}": value for name, value in values.items()}


def _exec(services: Services, actions: Actions, asset: Asset, steps: list[str]) -> Outcome:
    program = actions.exec[0]
    try:
        result = run_command(actions.exec, _variables(services, asset), actions.exec_timeout_seconds)
    except OSError as error:
        return Retry(f"exec: cannot start {program}: {error.strerror or error}")
    said = result.describe(program, actions.exec_timeout_seconds)
    if result.code != 0:
        return Retry(f"exec: {said}", changes={"last_action": said})
    return _next(asset, steps, f"exec: {said}")


def _post(services: Services, actions: Actions, asset: Asset, steps: list[str]) -> Outcome:
    assert actions.http is not None
    result = post_event(actions.http, event_document(asset, services.clock.now(), _root(services, asset)))
    if result.ok:
        return _next(asset, steps, f"http: {result.detail}")
    if result.worth_retrying:
        return Retry(f"http: {result.detail}", changes={"last_action": result.detail})
    return Fail(f"http: {result.detail} (the receiver refused the event; fix it, then 'deepva-watch retry')")


def _root(services: Services, asset: Asset) -> Path | None:
    """The path on this node of the folder the row is in (None: a reload removed it; its name is then its path)."""
    folder = services.folder_named(asset.folder)
    return folder.path.absolute() if folder is not None else None
