"""What the status page and ``/status.json`` show, read from the running daemon at request time.

One function per view, each returning plain data (JSON-ready dicts and lists), so the page's templates and the JSON
twin show the same numbers: :func:`overview` (folders and their watch, files per state, the backlog, running uploads,
recent failures, health, the nodes working on the ledger), :func:`search` (files whose path holds some text) and :func:`story` (every version of a file
and every step, as ``deepva-watch show`` tells it). Nothing here writes; the buttons' changes are in :mod:`.page`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from deepva_watch.config import Config
from deepva_watch.flow.transfers import TransferView
from deepva_watch.ledger import Asset, HistoryEntry, Ledger
from deepva_watch.ledger.model import Node
from deepva_watch.service.health import FolderState, Health
from deepva_watch.states import ALL, FINAL, State
from deepva_watch.watch.discover import latest_in_order

#: Recent failures shown on the page.
RECENT_FAILURES = 20
#: Search results shown, at most (the page says when there are more).
SEARCH_LIMIT = 100
#: Longer search text is cut: no file name needs more.
SEARCH_TEXT_LIMIT = 200
#: Paths per ledger query when search fetches the rows it picked (well inside SQLite's limit on parameters).
CHUNK = 500
#: What :func:`deepva_watch.ledger.model.new_asset_id` makes; the only form ``/file/<asset_id>`` takes.
ASSET_ID = re.compile(r"dvw-[0-9a-f]{32}")
#: States in flow order, for tables whose columns are states.
STATE_ORDER = {str(state): index for index, state in enumerate(ALL)}


class FolderView(FolderState, Protocol):
    """What the page reads of a folder's watch besides what health reads: how it is watched, and why."""

    @property
    def mode(self) -> str: ...

    @property
    def why_mode(self) -> str: ...


@dataclass(frozen=True)
class Sources:
    """Where the page reads from, each asked at request time: a reload's new config and folders show at once."""

    ledger: Ledger
    config: Callable[[], Config]
    folders: Callable[[], Sequence[FolderView]]
    uploads: Callable[[], Sequence[TransferView]]
    health: Health
    requeued: Callable[[State], None] = field(default=lambda state: None)
    """Told the state a button sent a file to, so that stage's workers look at once."""
    clock: Callable[[], float] = time.time
    node: str | None = None
    """The name of the node serving the page (marked in its list of nodes); None: not marked."""


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def human_size(count: float) -> str:
    """``91.7 kB``, ``2.1 GB``: decimal units, as file managers show them."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count:.0f} B"


def asset_json(asset: Asset, now: float) -> dict[str, Any]:
    """One file version as the page and /status.json show it (the fields of ``deepva-watch status --json``, and the
    stage a failed file failed in)."""
    return {
        "asset_id": asset.asset_id,
        "folder": asset.folder,
        "path": asset.relpath,
        "full_path": os.path.join(asset.folder, asset.relpath),
        "state": str(asset.state),
        "size": asset.size,
        "attempts": asset.attempts,
        "job_id": asset.job_id,
        "job_state": asset.job_state,
        "last_error": asset.last_error,
        "failed_in": asset.failed_in,
        "created_at": iso(asset.created_at),
        "updated_at": iso(asset.updated_at),
        "age_seconds": round(max(0.0, now - asset.created_at), 1),
        "since_update_seconds": round(max(0.0, now - asset.updated_at), 1),
    }


def upload_json(upload: TransferView) -> dict[str, Any]:
    eta = upload.eta_seconds
    return {
        "asset_id": upload.asset_id,
        "folder": upload.folder,
        "path": upload.relpath,
        "full_path": os.path.join(upload.folder, upload.relpath),
        "sent": upload.sent,
        "total": upload.total,
        "fraction": round(upload.sent / upload.total, 4) if upload.total else None,
        "rate": round(upload.rate, 1),
        "eta_seconds": None if eta is None else round(eta, 1),
        "seconds": round(upload.seconds, 1),
    }


def node_json(node: Node, now: float) -> dict[str, Any]:
    """One daemon working on the ledger, as ``deepva-watch status`` and the page show it. ``state``: ``alive``, ``left``
    (it stopped and said so) or ``dead`` (silent for longer than its lease: the others take its rows over).
    ``last_beat_seconds_ago`` is negative when the node's clock is ahead of this one."""
    return {
        "name": node.name,
        "host": node.host,
        "pid": node.pid,
        "state": "alive" if node.alive(now) else "left" if node.left_at is not None else "dead",
        "started_at": iso(node.started_at),
        "last_beat": iso(node.last_beat),
        "last_beat_seconds_ago": round(now - node.last_beat, 1),
        "lease_seconds": node.lease_seconds,
        "left_at": iso(node.left_at),
        "rows_held": node.rows_held,
    }


def nodes_json(ledger: Ledger, now: float) -> list[dict[str, Any]]:
    """Every node of the ledger, the live ones first, each group by name."""
    views = [node_json(node, now) for node in ledger.nodes()]
    return sorted(views, key=lambda view: (view["state"] != "alive", view["name"]))


def _states(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: STATE_ORDER.get(item[0], len(STATE_ORDER))))


def overview(sources: Sources) -> dict[str, Any]:
    """Everything the front page shows (and /status.json serves)."""
    now = sources.clock()
    config = sources.config()
    report = sources.health.check()
    by_folder: dict[str, dict[str, int]] = {}
    totals: dict[str, int] = {}
    for (folder, state), count in sources.ledger.count_by_folder_and_state().items():
        by_folder.setdefault(folder, {})[state] = count
        totals[state] = totals.get(state, 0) + count
    watches = {view.folder: view for view in sources.folders()}
    folders = []
    for name in sorted(set(watches) | set(by_folder)):
        view = watches.get(name)
        counts = _states(by_folder.get(name, {}))
        folders.append({
            "folder": name,
            "watched": view is not None,
            "mode": view.mode if view else None,
            "why_mode": view.why_mode if view else "",
            "paused": bool(view and view.paused),
            "reason": view.reason if view else "",
            "degraded": bool(view and view.warning),
            "warning": view.warning if view else "",
            "last_scan_at": iso(view.last_scan_at) if view else None,
            "last_scan_age_seconds": (round(max(0.0, now - view.last_scan_at), 1)
                                      if view and view.last_scan_at is not None else None),
            "states": counts,
            "files": sum(counts.values()),
            "backlog": sum(count for state, count in counts.items() if state not in FINAL),
        })
    oldest = sources.ledger.oldest_waiting()
    uploads = sorted(sources.uploads(), key=lambda upload: (upload.folder, upload.relpath))
    return {
        "generated_at": iso(now),
        "health": report.as_json(),
        "folders": folders,
        "totals": _states(totals),
        "files": sum(totals.values()),
        "backlog": sum(count for state, count in totals.items() if state not in FINAL),
        "oldest_waiting": asset_json(oldest, now) if oldest else None,
        "uploads": [upload_json(upload) for upload in uploads],
        "recent_failures": [asset_json(asset, now) for asset in sources.ledger.recent_errors(RECENT_FAILURES)],
        "nodes": nodes_json(sources.ledger, now),
        "node": sources.node,
        "refresh_seconds": config.metrics.page_refresh_seconds,
    }


def search(sources: Sources, text: str, limit: int = SEARCH_LIMIT) -> dict[str, Any]:
    """The newest version of each file whose path (below its folder) holds ``text``, ignoring case; at most ``limit``,
    by folder and path.

    Each folder's paths are read in order a page at a time (as ``deepva-watch assets`` does), until ``limit`` match,
    and only the rows picked are read whole.
    """
    now = sources.clock()
    needle = text.strip()[:SEARCH_TEXT_LIMIT]
    if not needle:
        return {"query": needle, "results": [], "more": False, "limit": limit}
    wanted = needle.casefold()
    folders = sorted({folder for folder, _ in sources.ledger.count_by_folder_and_state()})
    picked: list[tuple[str, str]] = []
    more = False
    for folder in folders:
        for relpath, *_ in latest_in_order(sources.ledger, folder):  # in path order, a page at a time
            if wanted in relpath.casefold():
                if len(picked) == limit:
                    more = True
                    break
                picked.append((folder, relpath))
        if more:
            break
    rows: list[Asset] = []
    for folder in dict.fromkeys(folder for folder, _ in picked):
        relpaths = [relpath for each, relpath in picked if each == folder]
        for start in range(0, len(relpaths), CHUNK):
            chunk = relpaths[start:start + CHUNK]
            newest: dict[str, Asset] = {}
            for asset in sources.ledger.query(folder=folder, relpaths=chunk, limit=len(chunk) * 64):
                if asset.relpath not in newest or asset.id > newest[asset.relpath].id:
                    newest[asset.relpath] = asset
            for relpath in chunk:  # a path with very many versions may fall past the limit: ask for it alone
                found = newest.get(relpath) or sources.ledger.latest_version(folder, relpath)
                if found is not None:
                    rows.append(found)
    return {"query": needle, "results": [asset_json(asset, now) for asset in rows], "more": more, "limit": limit}


def story(sources: Sources, asset_id: str) -> dict[str, Any] | None:
    """The story of the file ``asset_id`` is a version of (see :func:`file_story`); None: no such asset."""
    asked = sources.ledger.by_asset_id(asset_id) if ASSET_ID.fullmatch(asset_id) else None
    if asked is None:
        return None
    assets = sources.ledger.versions(asked.folder, asked.relpath) or [asked]
    return file_story(sources.ledger, assets, sources.clock(), asset_id)


def file_story(ledger: Ledger, assets: Sequence[Asset], now: float, asked: str | None) -> dict[str, Any]:
    """Every version of one path, oldest first, each with its steps and how long each lasted (the time until the
    next step, or until now while the version still waits), its job and its sidecars: ``show`` and the page."""
    history = ledger.history([asset.asset_id for asset in assets])
    versions = []
    for number, asset in enumerate(assets, 1):
        steps = _steps(asset, [entry for entry in history if entry.asset_id == asset.asset_id])
        waiting = None if asset.state in FINAL else max(0.0, now - steps[-1]["at_epoch"])
        versions.append({
            **asset_json(asset, now),
            "number": number,
            "newest": asset is assets[-1],
            "asked": asset.asset_id == asked,
            "mtime": iso(asset.mtime_ns / 1e9),
            "kind": asset.kind,
            "mime": asset.mime,
            "job": None if not asset.job_id else {
                "id": asset.job_id, "state": asset.job_state, "progress": asset.job_progress, "errors": asset.errors,
                "submitted_at": iso(asset.submitted_at), "completed_at": iso(asset.completed_at),
                "seconds": asset.job_seconds},
            "published_at": iso(asset.published_at),
            "sidecars": {kind: None if path is None else {"path": path, "exists": os.path.isfile(path)}
                         for kind, path in (("xmp", asset.xmp_path), ("json", asset.json_path))},
            "steps": steps,
            "waiting_seconds": None if waiting is None else round(waiting, 1),
        })
    first = assets[0]
    return {"folder": first.folder, "path": first.relpath, "full_path": os.path.join(first.folder, first.relpath),
            "asked": asked, "versions": versions}


def _steps(asset: Asset, entries: list[HistoryEntry]) -> list[dict[str, Any]]:
    """The recorded steps of one version. Every version starts out settling when its row is made; that first sighting
    becomes the first step unless the history already holds it."""
    raw = [(entry.at, entry.from_state, entry.to_state, entry.stage, entry.attempt, entry.error, entry.job_id)
           for entry in entries]
    if not raw or raw[0][1] is not None or raw[0][2] != State.SETTLING:
        raw.insert(0, (asset.created_at, None, str(State.SETTLING), "discover", 0, None, None))
    steps: list[dict[str, Any]] = []
    previous: str | None = None
    for index, (at, origin, to, stage, attempt, error, job_id) in enumerate(raw):
        following = raw[index + 1][0] if index + 1 < len(raw) else None
        steps.append({
            "at": iso(at), "at_epoch": at,
            "from": origin or previous,  # a sighting (gone, superseded) records no origin: the step before
            "to": to, "stage": stage, "attempt": attempt, "error": error, "job_id": job_id,
            "seconds": None if following is None else round(max(0.0, following - at), 3),
        })
        previous = to
    return steps
