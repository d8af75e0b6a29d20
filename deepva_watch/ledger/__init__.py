"""The ledger: the daemon's single source of truth, behind one protocol (:class:`Ledger`).

SQLite is the embedded default; :class:`PostgresLedger` (the ``postgres`` extra) is imported only when first named, so
the package works without psycopg installed.

One row per file version; every step of the flow is one committed transition that lands only while the row is still
where the step found it, so two workers never both advance a row and a ``kill -9`` at any moment leaves each row
before or after a step, never half way. File-system events are only hints that end in :meth:`Ledger.observe`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from deepva_watch.ledger.postgres import PostgresLedger as PostgresLedger


def open_ledger(location: Path | str, *, password: str | None = None, readonly: bool = False,
                exclusive: bool = False) -> Ledger:
    """The ledger the config names: a SQLite file, or a PostgreSQL URL (with its ``password``, if any);
    ``exclusive`` for the daemon (one per SQLite ledger; several nodes are the point of PostgreSQL)."""
    if isinstance(location, Path):
        return SqliteLedger(location, readonly=readonly, exclusive=exclusive)
    try:
        from deepva_watch.ledger.postgres import PostgresLedger
    except ImportError:
        raise LedgerError("a PostgreSQL ledger needs the PostgreSQL driver: install deepva-watch[postgres] "
                          "(the service's install includes it)") from None
    return PostgresLedger(location, password=password, readonly=readonly, exclusive=exclusive)


def __getattr__(name: str) -> Any:
    if name == "PostgresLedger":  # needs psycopg: imported on first use only (and left out of a star import)
        from deepva_watch.ledger.postgres import PostgresLedger

        return PostgresLedger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Asset", "HistoryEntry", "Latest", "Ledger", "LedgerError", "Move", "Observation", "Quota", "SqliteLedger",
    "TransitionLost", "dumps_errors", "open_ledger",
]
