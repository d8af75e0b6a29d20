"""The values a ledger hands out and takes in: a row as a value, a batch transition, a quota, a step of history; and
what every implementation makes them with alike (asset ids, the transition statement, the history entry of a move)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from deepva_watch.media.files import Identity
from deepva_watch.states import State


@dataclass(frozen=True)
class Asset:
    """One row of the ledger: one version (path, size, mtime) of a file. Stages receive it, never the row itself."""

    id: int
    asset_id: str
    folder: str
    relpath: str
    size: int
    mtime_ns: int
    state: State
    attempts: int
    next_attempt_at: float
    stable_since: float
    created_at: float
    updated_at: float
    content_hash: str | None = None
    mime: str | None = None
    kind: str | None = None
    last_error: str | None = None
    error_retryable: int | None = None
    storage_url: str | None = None
    storage_id: str | None = None
    submit_attempted: int = 0
    job_id: str | None = None
    job_state: str | None = None
    job_progress: float | None = None
    job_errors: str | None = None
    xmp_path: str | None = None
    json_path: str | None = None
    submitted_at: float | None = None
    completed_at: float | None = None
    published_at: float | None = None
    priority: int = 0
    job_failures: int = 0
    upload_attempted: int = 0
    cleanup_pending: int = 0
    failed_in: str | None = None
    """The stage the file failed in (``retry`` sends it back there)."""
    job_snapshot: str | None = None
    """The finished job as DeepVA last reported it, kept until its sidecars are written."""
    job_seconds: float | None = None
    """How long DeepVA took for the job, by its own clock (what the next jobs of the kind are expected to take)."""
    device: int | None = None
    inode: int | None = None
    """The file that was sniffed: later steps read only that file, never another put in its place."""
    media_seconds: float | None = None
    """A video's duration as probed when it was sniffed (what the daily budget counts)."""
    outcome: str | None = None
    """While ``handing_on``: ``done`` or ``failed``, where the row lands once its folder's actions have run."""
    actions_folder: str | None = None
    """Whose actions run (the folder the file was in when they began; ``move_to`` may take it into another)."""
    actions_done: int = 0
    last_action: str | None = None
    move_target: str | None = None
    """Where ``move_to`` is moving the file (chosen and committed before a byte moves, so a repeat finishes it)."""
    location: str | None = None
    """Where the file is now when an action moved it out of every watched folder."""

    @property
    def identity(self) -> Identity | None:
        """The file sniffing opened, which every later open must find again; None before sniffing."""
        return Identity(self.device, self.inode) if self.device is not None and self.inode is not None else None

    @property
    def errors(self) -> list[str]:
        return json.loads(self.job_errors) if self.job_errors else []


ASSET_COLUMNS = tuple(spec.name for spec in fields(Asset))


def asset_from_row(row: Mapping[str, Any]) -> Asset:
    """A row of the ``assets`` table, read by column name (SQLite's and psycopg's rows both are), as a value."""
    values = {name: row[name] for name in ASSET_COLUMNS}
    values["state"] = State(values["state"])
    return Asset(**values)
#: Columns a transition may not set: the row's identity, and its state (set by the transition itself).
FIXED_COLUMNS = frozenset({"id", "asset_id", "state"})


def check_changes(changes: Mapping[str, Any]) -> None:
    for name in changes:
        if name not in ASSET_COLUMNS or name in FIXED_COLUMNS:
            raise ValueError(f"not a column a transition may set: {name}")


def transition_sql(changes: Mapping[str, Any], mark: str) -> str:
    """The statement of one transition, with the driver's placeholder ``mark``: it lands only while the row is still
    in the expected state. Parameters: the new state, the time, the changes' values, the row's id, the expected state.
    Raises ValueError for a column a transition may not set."""
    check_changes(changes)
    assignments = "".join(f", {name} = {mark}" for name in changes)
    return (f"UPDATE assets SET state = {mark}, updated_at = {mark}{assignments} WHERE id = {mark} AND state = {mark} "
            "RETURNING *")


@dataclass(frozen=True)
class Move:
    """One transition of a batch: the row goes from ``expected`` to ``to`` with ``changes``, if it is still there."""

    asset: Asset
    expected: State
    to: State
    changes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Quota:
    """At most ``limit`` rows in ``states`` together (``max_active_jobs``: jobs being created or running)."""

    states: tuple[State, ...]
    limit: int


@dataclass(frozen=True)
class Node:
    """A daemon working on a ledger. On PostgreSQL several nodes share one ledger: each row a node claims is held by
    it, and a node whose heartbeat is older than its lease (or that left) is dead: others take its rows over."""

    name: str
    host: str
    pid: int
    started_at: float
    last_beat: float
    lease_seconds: float
    left_at: float | None = None
    rows_held: int = 0
    """Rows in a step (a working state) that this node holds."""

    def alive(self, now: float) -> bool:
        return self.left_at is None and now - self.last_beat <= self.lease_seconds


@dataclass(frozen=True)
class Observation:
    """What a sighting did: ``new``, ``changed`` (still settling), ``known`` or ``revived``."""

    outcome: str
    asset_id: str | None


@dataclass(frozen=True)
class HistoryEntry:
    """One committed step of a file version's story."""

    asset_id: str
    at: float
    from_state: str | None
    to_state: str
    stage: str | None
    attempt: int
    error: str | None
    job_id: str | None
    note: str | None = None
    """What an action said (a command's exit code and last lines, an HTTP status, where a file was moved)."""


class TransitionLost(Exception):
    """The row was no longer in the state the step started from (another worker or a deletion got there first)."""


def landed_alone(landed: Sequence[Asset | None], move: Move) -> Asset:
    """The row a batch of one move landed; :class:`TransitionLost` if it had moved on."""
    (row,) = landed
    if row is None:
        raise TransitionLost(f"asset {move.asset.asset_id} is no longer {move.expected}")
    return row


class LedgerError(Exception):
    """The ledger cannot be used (unreadable, corrupt, written by a newer version): one line for the operator."""


def history_row(row: Asset, move: Move, now: float, stage: str | None) -> tuple[Any, ...] | None:
    """What a landed move adds to the story, in the history table's column order (asset, at, from_state, to_state,
    stage, attempt, error, job_id, note): the error it recorded and what an action said, if anything. None for a
    wait (the row stays where it was and records no error), which is no step of the story."""
    error, note = move.changes.get("last_error"), move.changes.get("last_action")
    if row.state == move.expected and not error:
        return None
    return (row.id, now, move.expected, row.state, stage, row.attempts, error if isinstance(error, str) else None,
            row.job_id, note if isinstance(note, str) else None)


def dumps_errors(errors: Sequence[str]) -> str:
    return json.dumps(list(errors), ensure_ascii=False)


def new_asset_ids(count: int) -> list[str]:
    """Asset ids for rows inserted together, in the form ``dvw-`` and 32 hex digits:
    the time in milliseconds, 64 random bits drawn once for the batch, and the row's place in it.

    Ids that grow with time are appended to the end of the ``asset_id`` index. Random ones (uuid4) put every row on
    another page of it, and recording the first scan of a million files rewrote a page per row: 36 s instead of 13 s.
    They are as unique: two batches collide only with the same millisecond and the same 64 random bits.
    """
    ids: list[str] = []
    while len(ids) < count:
        head = f"dvw-{time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF:012x}{secrets.randbits(64):016x}"
        ids.extend(f"{head}{index:04x}" for index in range(min(count - len(ids), 0x10000)))
    return ids
