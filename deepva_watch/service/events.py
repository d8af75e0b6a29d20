"""``GET /events?after=CURSOR&limit=N``: files that ended ``published`` or ``failed``, in commit order, as the events
the ``http`` action sends plus their ``cursor``; ``next`` is where to ask from next time. The cursor is the id of the
file's story entry, so a client that keeps it misses nothing and counts nothing twice across restarts of either side.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from deepva_watch.handoff.event import event_document
from deepva_watch.ledger import Ledger

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class BadRequest(ValueError):
    """The query is not what the feed takes; the message says what is."""


def events_page(ledger: Ledger, query: str, roots: Mapping[str, Path] | None = None) -> dict[str, Any]:
    """``roots``: where each folder the ledger names is on this node (by default its name is its path)."""
    after, limit = _parse(query)
    finished = ledger.finished_since(after, limit)
    roots = roots or {}
    events = [{**event_document(asset, at, roots.get(asset.folder)), "cursor": cursor} for cursor, at, asset in finished]
    return {"events": events, "next": finished[-1][0] if finished else after}


def _parse(query: str) -> tuple[int, int]:
    try:
        values = parse_qs(query, max_num_fields=10)
        after = int(values.get("after", ["0"])[-1])
        limit = int(values.get("limit", [str(DEFAULT_LIMIT)])[-1])
    except ValueError:
        raise BadRequest("after and limit are whole numbers: /events?after=0&limit=100") from None
    if after < 0 or not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"after >= 0 and limit from 1 to {MAX_LIMIT}")
    return after, limit
