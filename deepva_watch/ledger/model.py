"""The values a ledger hands out and takes in: a row as a value, a batch transition, a quota, a step of history."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
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

    @cached_property
    def path(self) -> Path:
        return Path(self.folder, self.relpath)

    @property
    def identity(self) -> Identity | None:
        """The file sniffing opened, which every later open must find again; None before sniffing."""
        return Identity(self.device, self.inode) if self.device is not None and self.inode is not None else None

    @property
    def errors(self) -> list[str]:
        return json.loads(self.job_errors) if self.job_errors else []


ASSET_COLUMNS = tuple(spec.name for spec in fields(Asset))
#: Columns a transition may not set: the row's identity, and its state (set by the transition itself).
FIXED_COLUMNS = frozenset({"id", "asset_id", "state"})


def check_changes(changes: Mapping[str, Any]) -> None:
    for name in changes:
        if name not in ASSET_COLUMNS or name in FIXED_COLUMNS:
            raise ValueError(f"not a column a transition may set: {name}")


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


class LedgerError(Exception):
    """The ledger cannot be used (unreadable, corrupt, written by a newer version): one line for the operator."""


def dumps_errors(errors: Sequence[str]) -> str:
    return json.dumps(list(errors), ensure_ascii=False)
