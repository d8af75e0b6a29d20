"""The ledger: the daemon's single source of truth, behind one protocol (:class:`Ledger`).

One row per file version; every step of the flow is one committed transition that lands only while the row is still
where the step found it, so two workers never both advance a row and a ``kill -9`` at any moment leaves each row
before or after a step, never half way. File-system events are only hints that end in :meth:`Ledger.observe`.
"""

from __future__ import annotations

from pathlib import Path

from deepva_watch.ledger.model import (
    Asset,
    HistoryEntry,
    LedgerError,
    Move,
    Observation,
    Quota,
    TransitionLost,
    dumps_errors,
)
from deepva_watch.ledger.protocol import Latest, Ledger
from deepva_watch.ledger.sqlite import SqliteLedger


def open_ledger(location: Path, *, readonly: bool = False, exclusive: bool = False) -> Ledger:
    """The ledger the config names; ``exclusive`` for the daemon (one per SQLite ledger)."""
    return SqliteLedger(location, readonly=readonly, exclusive=exclusive)


__all__ = [
    "Asset", "HistoryEntry", "Latest", "Ledger", "LedgerError", "Move", "Observation", "Quota", "SqliteLedger",
    "TransitionLost", "dumps_errors", "open_ledger",
]
