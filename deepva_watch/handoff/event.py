"""The event that tells the outside world a file is finished: POSTed by the ``http`` action and listed by the
``/events`` feed, with the same fields (documented in the README, "After a file is done")."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deepva_watch.ledger import Asset
from deepva_watch.states import State


def outcome_of(asset: Asset) -> str:
    """``done`` or ``failed``: where the file is going (while its actions run) or where it ended."""
    if asset.outcome:
        return asset.outcome
    return "failed" if asset.state == State.FAILED else "done"


def current_path(asset: Asset, root: Path | None = None) -> Path:
    """Where the media file is now: moved out of every watched folder, or in its folder, whose path on this node is
    ``root`` (None: the ledger's name of the folder is its path)."""
    return Path(asset.location) if asset.location else (root or Path(asset.folder)) / asset.relpath


def event_document(asset: Asset, at: float, root: Path | None = None) -> dict[str, Any]:
    outcome = outcome_of(asset)
    return {
        "event_id": f"{asset.asset_id}.{outcome}",
        "outcome": outcome,
        "asset_id": asset.asset_id,
        "path": str(current_path(asset, root)),
        "folder": asset.folder,
        "relpath": asset.relpath,
        "job_id": asset.job_id,
        "xmp_path": asset.xmp_path,
        "json_path": asset.json_path,
        "error": asset.last_error if outcome == "failed" else None,
        "at": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
    }
