"""``show``: one file's whole story, from the ledger alone.

Every version the ledger holds of the path, oldest first; for each its steps (when, from which state to which, in
which stage, at which attempt, with what error and job) and how long each lasted — the time until the next step, or
until now while the version still waits — its DeepVA job and the sidecars written for it. The answer to "what
happened to clip.mxf?" without reading the journal.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from typing import Any

from deepva_watch.commands.common import EXIT_OK, CommandError, emit_json, human_age, ledger_path, load, open_ledger
from deepva_watch.config import Config
from deepva_watch.ledger import Ledger
from deepva_watch.service.status import ASSET_ID, file_story


def run(args: argparse.Namespace) -> int:
    config = load(args)
    ledger = open_ledger(config, readonly=True)
    asked, folder, relpath = _target(config, ledger, args.target)
    assets = ledger.versions(folder, relpath)
    if not assets:
        raise CommandError(f"{args.target}: not in the ledger (a file the daemon has not seen yet, or one forgotten)")
    told = file_story(ledger, assets, time.time(), asked)
    if args.json:
        emit_json(told)
    else:
        _print(told)
    return EXIT_OK


def _target(config: Config, ledger: Ledger, given: str) -> tuple[str | None, str, str]:
    """``(asset id asked for, folder, relpath)`` of a path or an asset id."""
    if ASSET_ID.fullmatch(given):
        asset = ledger.by_asset_id(given)
        if asset is None:
            raise CommandError(f"{given}: no such asset id in the ledger")
        return given, asset.folder, asset.relpath
    where = ledger_path(config, given)
    return None, where.folder, where.relpath


def _local(timestamp: str) -> str:
    """Local time, as the journal shows it, so a step can be found there."""
    return datetime.fromisoformat(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _print(told: dict[str, Any]) -> None:
    versions = told["versions"]
    print(f"{told['full_path']}: {len(versions)} version(s), oldest first")
    for version in versions:
        mark = "  ← asked" if version["asked"] else ""
        print(f"\nversion {version['number']}: {version['asset_id']}  {version['state']}  {version['size']} bytes, "
              f"modified {_local(version['mtime'])}{mark}")
        if version["last_error"]:
            print(f"  last error: {version['last_error']}")
        job = version["job"]
        if job:
            took = f", {human_age(job['seconds'])} at DeepVA" if job["seconds"] is not None else ""
            print(f"  job {job['id']}: {job['state'] or 'state unknown'}{took}")
            for error in job["errors"]:
                print(f"    {error}")
        for kind, sidecar in version["sidecars"].items():
            if sidecar:
                print(f"  {kind} sidecar: {sidecar['path']}{'' if sidecar['exists'] else ' (missing now)'}")
        print(f"  {'when':<19}  {'step':<25} {'stage':<9} {'lasted':>11}  notes")
        waiting, job_id = version["waiting_seconds"], None
        for step in version["steps"]:
            move = f"{step['from']} → {step['to']}" if step["from"] else f"→ {step['to']}"
            took = human_age(step["seconds"]) if step["seconds"] is not None else (
                f"{human_age(waiting)} so far" if waiting is not None else "")
            details = [f"attempt {step['attempt']}" if step["attempt"] else "",
                       f"job {step['job_id']}" if step["job_id"] and step["job_id"] != job_id else "",
                       step["error"] or ""]
            note = "; ".join(detail for detail in details if detail)
            print(f"  {_local(step['at'])}  {move:<25} {step['stage'] or '':<9} {took:>11}  {note}".rstrip())
            job_id = step["job_id"] or job_id
