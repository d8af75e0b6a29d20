"""What any ledger must offer. SQLite (:mod:`.sqlite`) is the embedded default; every implementation passes the same
shared test suite (``tests/ledger``).

The rules every implementation keeps: a transition lands only while the row is still in the state the step started
from; a claim moves rows into a working state so no other worker can take them; a quota is counted inside the claim,
so claims by several workers can never overshoot it together; each landed transition is recorded in the history in
the same transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from deepva_watch.ledger.model import Asset, HistoryEntry, Move, Node, Observation, Quota
from deepva_watch.states import State

#: ``relpath -> (size, mtime_ns, state)`` of each path's newest version.
Latest = dict[str, tuple[int, int, str]]


class Ledger(Protocol):
    # -- nodes -----------------------------------------------------------------------------------------------------

    def join(self, name: str, host: str, pid: int, now: float, lease_seconds: float) -> None:
        """This handle works as the node ``name`` from now on: the rows it claims are held by it. Raises
        :class:`~.model.LedgerError` if a live node of that name (another process) already works on the ledger."""
        ...

    def heartbeat(self, now: float) -> None:
        """The node is alive: its lease on every row it holds runs from now."""
        ...

    def take_over(self, now: float) -> dict[str, int]:
        """Rows a dead node held in a working state go back home, due at once, as after a crash. Counts by the state
        taken from; empty on a one-node ledger."""
        ...

    def leave(self, now: float) -> None:
        """The node stops: the rows it holds may be taken over at once rather than after its lease."""
        ...

    def leads(self, role: str) -> bool:
        """Whether this node does the work named ``role`` that one node does at a time (tracking DeepVA's jobs, so
        that one list request answers for the jobs of every node). Always, on a one-node ledger."""
        ...

    def nodes(self) -> list[Node]:
        """Every node that has worked on the ledger, with the rows each holds."""
        ...

    # -- discovery -------------------------------------------------------------------------------------------------

    def observe(self, folder: str, relpath: str, size: int, mtime_ns: int, now: float) -> Observation:
        """A sighting: a version already held stays as it is; a settling row takes the new size and restarts its quiet
        period; anything else is a new version, and older versions not yet handed to DeepVA are superseded."""
        ...

    def observe_new_paths(
        self, folder: str, sightings: Sequence[tuple[str, int, int]], now: float, *,
        skipped: Collection[str] = frozenset(),
    ) -> tuple[list[tuple[str, str]], list[tuple[str, int, int]]]:
        """Sightings of never-seen paths, recorded in one go: ``([(relpath, asset_id)], [sightings left over])``.
        Paths in ``skipped`` are recorded ``skipped`` (present when the folder was first watched) and not returned."""
        ...

    def folder_first_seen(self, folder: str) -> float | None:
        """When the ledger first recorded a scan of this folder; None: never (its next scan is its first)."""
        ...

    def mark_folder_seen(self, folder: str, now: float) -> None:
        """Record the folder's first scan as done (a later call changes nothing)."""
        ...

    def spent_since(self, since: float) -> tuple[float, int]:
        """Seconds of video and number of images handed to DeepVA (jobs created) since that time."""
        ...

    def latest_versions(self, folder: str) -> Latest: ...

    def latest_versions_page(self, folder: str, after: str, limit: int) -> list[tuple[str, int, int, str]]:
        """Each path's newest version as ``(relpath, size, mtime_ns, state)``, for up to ``limit`` paths that come
        after ``after`` in code-point order, in that order: a reconcile pages through a million files without holding
        them all (:func:`deepva_watch.watch.discover.latest_in_order`)."""
        ...

    def mark_gone_many(self, folder: str, relpaths: Sequence[str], now: float) -> list[tuple[str, str]]:
        """Versions not yet handed to DeepVA of paths that vanished end ``gone``: ``[(relpath, asset_id)]``."""
        ...

    def adopt_mtime(self, row_id: int, mtime_ns: int, now: float) -> bool:
        """A remount shifted a known file's mtime: keep the row, take the new time (False if that version exists)."""
        ...

    def versions(self, folder: str, relpath: str) -> list[Asset]:
        """Every version of a path, oldest first."""
        ...

    # -- the flow --------------------------------------------------------------------------------------------------

    def claim(
        self, from_states: Sequence[State], working: State, now: float, limit: int, *, stage: str,
        quota: Quota | None = None, max_bytes: int | None = None,
    ) -> list[Asset]:
        """Move up to ``limit`` due rows into ``working`` and return them, highest priority then oldest first; with
        ``max_bytes`` take further rows only while the files already taken hold less than that."""
        ...

    def due(self, states: Sequence[State], now: float, limit: int) -> list[Asset]: ...

    def next_due_at(self, states: Sequence[State]) -> float | None: ...

    def transition(self, asset: Asset, expected: State, to: State, now: float, *, stage: str | None = None,
                   **changes: object) -> Asset:
        """One transition; raises :class:`~.model.TransitionLost` if the row moved on."""
        ...

    def transition_many(self, moves: Sequence[Move], now: float, *, stage: str | None = None) -> list[Asset | None]:
        """Several transitions in one transaction, in order; a row that moved on comes back as None."""
        ...

    def recover(self, now: float) -> dict[str, int]:
        """At start, after a crash: rows in a working state that this node held (on one node: all of them) or that
        a dead node held go back home, due at once."""
        ...

    def count_in(self, states: Sequence[State]) -> int: ...


    def poll_now(self, job_id: str, now: float) -> bool:
        """A webhook said this job moved: its submitted row is due for the tracker at once."""
        ...

    def retry_now(self, states: Sequence[State], now: float) -> int:
        """Rows in ``states`` waiting out a failure become due at once (DeepVA answers again)."""
        ...

    def set_folder_priorities(self, priorities: Mapping[str, int]) -> None: ...

    def recent_job_seconds(self, kind: str, limit: int) -> list[float]:
        """How long DeepVA took for the last ``limit`` jobs of files of this kind (image, video), newest first."""
        ...

    def pending_clean_ups(self, now: float, limit: int) -> list[Asset]:
        """Published rows whose job or storage copy is still to be deleted, due by ``next_attempt_at``."""
        ...

    def clean_up_done(self, row_id: int) -> None: ...

    def clean_up_later(self, row_id: int, until: float) -> None: ...

    # -- settings --------------------------------------------------------------------------------------------------

    def get_setting(self, name: str) -> str | None: ...

    def advance_setting(self, name: str, value: int, now: float) -> bool:
        """Store ``value`` only if greater than the stored one, atomically; True if it was (a nonce check)."""
        ...

    # -- operators -------------------------------------------------------------------------------------------------

    def get(self, row_id: int) -> Asset | None: ...

    def by_asset_id(self, asset_id: str) -> Asset | None: ...

    def latest_version(self, folder: str, relpath: str) -> Asset | None: ...

    def query(
        self, *, states: Sequence[str] = (), folder: str | None = None, relpaths: Sequence[str] = (),
        created_before: float | None = None, created_after: float | None = None, limit: int = 1000,
    ) -> list[Asset]: ...

    def count_by_state(self) -> dict[str, int]: ...

    def count_by_folder_and_state(self) -> dict[tuple[str, str], int]: ...

    def oldest_waiting(self) -> Asset | None: ...

    def overdue_jobs(self, submitted_before: float, limit: int = 10) -> list[Asset]:
        """Jobs at DeepVA submitted before that time and not finished, oldest first."""
        ...

    def count_overdue_jobs(self, submitted_before: float, cap: int) -> int:
        """How many jobs :meth:`overdue_jobs` would list, counted up to ``cap``."""
        ...

    def recent_errors(self, limit: int = 10) -> list[Asset]: ...

    def history(self, asset_ids: Sequence[str]) -> list[HistoryEntry]:
        """The recorded steps of these versions, oldest first."""
        ...

    def forget_idle(self, folder: str, relpath: str) -> int:
        """Delete every version of a path unless a worker holds one; returns the rows deleted."""
        ...

    def retirement_candidates(self, before: float, after_id: int, limit: int) -> list[Asset]:
        """Rows in a final state last changed before that time, by id after ``after_id`` (retention's walk)."""
        ...

    def retire(self, row_ids: Sequence[int], before: float) -> int:
        """Delete these rows and their history, each only if still final and unchanged since ``before``."""
        ...

    def prune_history(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` history entries older than that time, of rows in a final state."""
        ...

    def finished_since(self, after: int, limit: int) -> list[tuple[int, float, Asset]]:
        """Files that ended ``published`` or ``failed`` after the cursor ``after``, in commit order: ``(cursor, when,
        row)``; the cursor is the story entry's id, so a reader that stops and comes back misses nothing."""
        ...

    def problem(self) -> str | None:
        """Why the ledger can no longer be trusted under the running daemon (all work stops), or None."""
        ...

    def outage(self) -> str | None:
        """Why the ledger does not answer right now (work waits and resumes by itself once it does), or None."""
        ...

    def close(self) -> None:
        """Release what this process holds on the ledger (the caller's connection, the daemon's lock)."""
        ...
