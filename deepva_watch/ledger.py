"""The SQLite ledger: the daemon's single source of truth, and the only module that speaks SQL.

One row per *asset version* (a file at a path with a given size and modification time). Every step of the pipeline
is one committed state transition whose UPDATE only matches while the row is still in the state the step started from,
so two workers can never both advance a row, and a ``kill -9`` between any two statements leaves a row either before or
after a step, never half way. File-system events are only hints that lead to :meth:`Ledger.observe`.

States, in the order a healthy file passes through them::

    settling → settled → accepted → uploading → uploaded → submitting → submitted → completed → publishing → published

with the side exits ``rejected`` (not a supported media type), ``failed`` (with the reason and whether a retry can
help), ``gone`` (the file vanished before we finished) and ``superseded`` (a newer version of the file arrived).
``uploading``, ``submitting`` and ``publishing`` are *working* states, held while a worker talks to DeepVA or writes
sidecars; :meth:`Ledger.recover` returns rows left in them by a crash to the state before, and a row that was
``submitting`` remembers (``submit_attempted``) that a job may already exist, so that it looks for its tag first.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import sqlite_utils

SETTLING = "settling"
SETTLED = "settled"
ACCEPTED = "accepted"
REJECTED = "rejected"
UPLOADING = "uploading"
UPLOADED = "uploaded"
SUBMITTING = "submitting"
SUBMITTED = "submitted"
COMPLETED = "completed"
JOB_FAILED = "job_failed"
PUBLISHING = "publishing"
PUBLISHED = "published"
FAILED = "failed"
GONE = "gone"
SUPERSEDED = "superseded"

WORKING_STATES = {UPLOADING: ACCEPTED, SUBMITTING: UPLOADED, PUBLISHING: COMPLETED}
FINAL_STATES = frozenset({REJECTED, PUBLISHED, FAILED, GONE, SUPERSEDED})
#: States in which the file has not yet been handed to DeepVA: a vanished file simply ends as ``gone`` there.
UNSUBMITTED_STATES = (SETTLING, SETTLED, ACCEPTED, UPLOADED)
ALL_STATES = (
    SETTLING, SETTLED, ACCEPTED, REJECTED, UPLOADING, UPLOADED, SUBMITTING, SUBMITTED, COMPLETED, JOB_FAILED,
    PUBLISHING, PUBLISHED, FAILED, GONE, SUPERSEDED,
)  # fmt: skip


@dataclass(frozen=True)
class Asset:
    """One row of the ledger, as a value. Stages receive it, never the row itself."""

    id: int
    asset_id: str
    folder: str
    relpath: str
    size: int
    mtime_ns: int
    state: str
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

    @cached_property
    def path(self) -> Path:
        """Built once per value: a step asks for it several times, and pathlib is not cheap."""
        return Path(self.folder, self.relpath)

    @property
    def errors(self) -> list[str]:
        return json.loads(self.job_errors) if self.job_errors else []


_ASSET_COLUMNS = tuple(f.name for f in fields(Asset))

_SCHEMA_STEPS: tuple[str, ...] = (
    # 1: the assets table and the indexes the stages query by
    """
    CREATE TABLE assets (
        id INTEGER PRIMARY KEY,
        asset_id TEXT NOT NULL UNIQUE,
        folder TEXT NOT NULL,
        relpath TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL DEFAULT 0,
        stable_since REAL NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        content_hash TEXT,
        mime TEXT,
        kind TEXT,
        last_error TEXT,
        error_retryable INTEGER,
        storage_url TEXT,
        storage_id TEXT,
        submit_attempted INTEGER NOT NULL DEFAULT 0,
        job_id TEXT,
        job_state TEXT,
        job_progress REAL,
        job_errors TEXT,
        xmp_path TEXT,
        json_path TEXT,
        submitted_at REAL,
        completed_at REAL,
        published_at REAL
    );
    CREATE UNIQUE INDEX assets_version ON assets (folder, relpath, size, mtime_ns);
    CREATE INDEX assets_due ON assets (state, next_attempt_at);
    CREATE INDEX assets_path ON assets (folder, relpath);
    """,
    # 2: folder priority (claims take higher priority first, then oldest), failed-job count, upload leftovers
    """
    ALTER TABLE assets ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE assets ADD COLUMN job_failures INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE assets ADD COLUMN upload_attempted INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX assets_claim ON assets (state, priority DESC, id);
    """,
    # 3: small named values that must survive restarts (the last webhook nonce, the API's health)
    """
    CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL);
    CREATE INDEX assets_job ON assets (job_id);
    """,
    # 4: published rows whose job or storage copy is still to be deleted (a crash or a refusal came between)
    """
    ALTER TABLE assets ADD COLUMN cleanup_pending INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX assets_cleanup ON assets (updated_at) WHERE cleanup_pending = 1;
    """,
)


@dataclass(frozen=True)
class Quota:
    """At most ``limit`` rows in ``states`` together (``max_active_jobs``: jobs being created or running)."""

    states: tuple[str, ...]
    limit: int


class TransitionLost(Exception):
    """The row was no longer in the state the step started from (another worker or a deletion got there first)."""


@dataclass(frozen=True)
class Observation:
    """What :meth:`Ledger.observe` did with a sighting: ``new``, ``changed`` (still settling), ``known`` or ``revived``."""

    outcome: str
    asset_id: str | None


class Ledger:
    """Thread-safe access to the ledger file: each thread gets its own SQLite connection."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self._readonly = readonly
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._priorities: dict[str, int] = {}
        if not readonly:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._migrate()

    # -- connections and transactions -----------------------------------------------------------------------------

    def _db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            if self._readonly:
                conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None, timeout=30)
            else:
                conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.row_factory = sqlite3.Row
            db = sqlite_utils.Database(conn)
            self._local.db = db
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. IMMEDIATE takes the write lock up front, so a read-then-write never deadlocks.

        Threads of this process queue on a Python lock first: SQLite's own busy handler waits by sleeping in growing
        steps (up to 100 ms), which under a burst of small transactions from many workers costs far more than the
        work. Other processes (the operator's CLI) still meet SQLite's lock and its busy timeout.
        """
        conn = self._db().conn
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _write_one(self, sql: str, parameters: Sequence[Any]) -> list[sqlite3.Row]:
        """One statement that is a whole transaction by itself (an UPDATE … RETURNING), run without BEGIN/COMMIT.

        A single statement is atomic on its own, and the hot path (a transition per step, a claim per worker) then
        costs one call into SQLite instead of three: each call lets go of the GIL, and every hand-over of the GIL
        between busy workers is a context switch. All rows are fetched, which ends the statement and so commits it.
        """
        conn = self._db().conn
        with self._write_lock:
            return conn.execute(sql, parameters).fetchall()

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.conn.close()
            self._local.db = None

    def _migrate(self) -> None:
        db = self._db()
        with self._write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS migrations (step INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            done = {row[0] for row in conn.execute("SELECT step FROM migrations")}
            for step, script in enumerate(_SCHEMA_STEPS, start=1):
                if step in done:
                    continue
                for statement in filter(str.strip, script.split(";")):
                    conn.execute(statement)
                conn.execute("INSERT INTO migrations (step, applied_at) VALUES (?, datetime('now'))", (step,))
        assert "assets" in db.table_names()

    def get_setting(self, name: str) -> str | None:
        row = self._db().conn.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def advance_setting(self, name: str, value: int, now: float) -> bool:
        """Store ``value`` only if it is greater than the stored one, atomically; True if it was (a nonce check)."""
        with self._write() as conn:
            row = conn.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
            if row is not None and int(row[0]) >= value:
                return False
            conn.execute(
                "INSERT INTO settings (name, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (name, str(value), now),
            )
            return True

    def set_folder_priorities(self, priorities: dict[str, int]) -> None:
        """Folder priorities from the config: new rows take theirs, and rows still waiting are re-ranked."""
        self._priorities = dict(priorities)
        if self._readonly:
            return
        with self._write() as conn:
            for folder, priority in priorities.items():
                conn.execute(
                    f"UPDATE assets SET priority = ? WHERE folder = ? AND priority != ? AND state NOT IN "
                    f"({','.join('?' * len(FINAL_STATES))})",
                    (priority, folder, priority, *FINAL_STATES),
                )

    # -- reading ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _asset(row: sqlite3.Row) -> Asset:
        if tuple(row.keys()) == _ASSET_COLUMNS:  # every SELECT * of the current schema: a third of the cost by name
            return Asset(*row)
        return Asset(**{name: row[name] for name in _ASSET_COLUMNS})

    def get(self, row_id: int) -> Asset | None:
        row = self._db().conn.execute("SELECT * FROM assets WHERE id = ?", (row_id,)).fetchone()
        return self._asset(row) if row else None

    def by_asset_id(self, asset_id: str) -> Asset | None:
        row = self._db().conn.execute("SELECT * FROM assets WHERE asset_id = ?", (asset_id,)).fetchone()
        return self._asset(row) if row else None

    def versions(self, folder: str, relpath: str) -> list[Asset]:
        """Every version recorded for a path, oldest first."""
        rows = self._db().conn.execute(
            "SELECT * FROM assets WHERE folder = ? AND relpath = ? ORDER BY id", (folder, relpath)
        ).fetchall()
        return [self._asset(row) for row in rows]

    def due(self, states: Sequence[str], now: float, limit: int) -> list[Asset]:
        """Rows in one of ``states`` whose next attempt is due, oldest first."""
        marks = ",".join("?" * len(states))
        rows = self._db().conn.execute(
            f"SELECT * FROM assets WHERE state IN ({marks}) AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
            (*states, now, limit),
        ).fetchall()
        return [self._asset(row) for row in rows]

    def next_due_at(self, states: Sequence[str]) -> float | None:
        marks = ",".join("?" * len(states))
        row = self._db().conn.execute(
            f"SELECT MIN(next_attempt_at) FROM assets WHERE state IN ({marks})", tuple(states)
        ).fetchone()
        return float(row[0]) if row[0] is not None else None

    def job_ids_in(self, state: str) -> set[str]:
        """Job ids of the rows in ``state`` (the tracker's jobs: as many as ``max_active_jobs``)."""
        rows = self._db().conn.execute("SELECT job_id FROM assets WHERE state = ? AND job_id IS NOT NULL", (state,))
        return {row[0] for row in rows}

    def pending_clean_ups(self, updated_before: float, limit: int) -> list[Asset]:
        """Published rows whose job or storage copy is still to be deleted, last touched before ``updated_before``."""
        rows = self._db().conn.execute(
            "SELECT * FROM assets INDEXED BY assets_cleanup WHERE cleanup_pending = 1 AND updated_at < ? AND state = ? "
            "ORDER BY updated_at LIMIT ?", (updated_before, PUBLISHED, limit),
        ).fetchall()
        return [self._asset(row) for row in rows]

    def clean_up_done(self, row_id: int) -> None:
        self._write_one("UPDATE assets SET cleanup_pending = 0 WHERE id = ?", (row_id,))

    def count_in(self, states: Sequence[str]) -> int:
        row = self._db().conn.execute(
            f"SELECT COUNT(*) FROM assets WHERE state IN ({','.join('?' * len(states))})", tuple(states)
        ).fetchone()
        return int(row[0])

    def count_by_state(self) -> dict[str, int]:
        rows = self._db().conn.execute("SELECT state, COUNT(*) FROM assets GROUP BY state").fetchall()
        return {row[0]: row[1] for row in rows}

    def count_by_folder_and_state(self) -> dict[tuple[str, str], int]:
        rows = self._db().conn.execute("SELECT folder, state, COUNT(*) FROM assets GROUP BY folder, state").fetchall()
        return {(row[0], row[1]): row[2] for row in rows}

    def query(
        self,
        *,
        states: Sequence[str] = (),
        folder: str | None = None,
        relpaths: Sequence[str] = (),
        created_before: float | None = None,
        created_after: float | None = None,
        limit: int = 1000,
    ) -> list[Asset]:
        """Rows for the operator's commands, newest first, filtered by state, folder, path and when first seen."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, values in (("state", states), ("relpath", relpaths)):
            if values:
                clauses.append(f"{column} IN ({','.join('?' * len(values))})")
                params.extend(values)
        for condition, value in (("folder = ?", folder), ("created_at <= ?", created_before),
                                 ("created_at >= ?", created_after)):
            if value is not None:
                clauses.append(condition)
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db().conn.execute(
            f"SELECT * FROM assets {where} ORDER BY id DESC LIMIT ?", (*params, limit)
        ).fetchall()
        return [self._asset(row) for row in rows]

    def integrity_ok(self) -> bool:
        return bool(self._db().conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    # -- writing ---------------------------------------------------------------------------------------------------

    def observe(self, folder: str, relpath: str, size: int, mtime_ns: int, now: float) -> Observation:
        """Record that a file was seen with this size and mtime.

        A version we already hold is left alone, so a file dropped again unchanged is never submitted twice. A file
        still settling has its size and mtime updated and its quiet period restarted. Anything else is a new version;
        an older version that has not reached DeepVA yet is superseded by it.
        """
        with self._write() as conn:
            latest = conn.execute(
                "SELECT * FROM assets WHERE folder = ? AND relpath = ? ORDER BY id DESC LIMIT 1", (folder, relpath)
            ).fetchone()
            if latest is not None and latest["size"] == size and latest["mtime_ns"] == mtime_ns:
                if latest["state"] == GONE:
                    conn.execute(
                        "UPDATE assets SET state = ?, stable_since = ?, next_attempt_at = ?, attempts = 0, "
                        "last_error = NULL, updated_at = ? WHERE id = ?",
                        (SETTLING, now, now, now, latest["id"]),
                    )
                    return Observation("revived", latest["asset_id"])
                return Observation("known", latest["asset_id"])
            if latest is not None and latest["state"] == SETTLING:
                clash = conn.execute(
                    "SELECT id FROM assets WHERE folder = ? AND relpath = ? AND size = ? AND mtime_ns = ?",
                    (folder, relpath, size, mtime_ns),
                ).fetchone()
                if clash is not None:  # the file went back to a version we already hold: that one stands
                    conn.execute("DELETE FROM assets WHERE id = ?", (latest["id"],))
                    return Observation("known", None)
                conn.execute(
                    "UPDATE assets SET size = ?, mtime_ns = ?, stable_since = ?, updated_at = ? WHERE id = ?",
                    (size, mtime_ns, now, now, latest["id"]),
                )
                return Observation("changed", latest["asset_id"])
            conn.execute(
                f"UPDATE assets SET state = ?, updated_at = ?, last_error = 'a newer version of the file arrived' "
                f"WHERE folder = ? AND relpath = ? AND state IN ({','.join('?' * len(UNSUBMITTED_STATES))})",
                (SUPERSEDED, now, folder, relpath, *UNSUBMITTED_STATES),
            )
            (asset_id,) = self._insert_versions(conn, folder, [(relpath, size, mtime_ns)], now)
            return Observation("new", asset_id)

    def _insert_versions(
        self, conn: sqlite3.Connection, folder: str, sightings: Sequence[tuple[str, int, int]], now: float
    ) -> list[str]:
        """New ``settling`` rows for ``(relpath, size, mtime_ns)`` sightings, inside the caller's transaction."""
        priority = self._priorities.get(folder, 0)
        ids = [new_asset_id() for _ in sightings]
        conn.executemany(
            "INSERT INTO assets (asset_id, folder, relpath, size, mtime_ns, state, stable_since, next_attempt_at, "
            "created_at, updated_at, priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(asset_id, folder, relpath, size, mtime_ns, SETTLING, now, now, now, now, priority)
             for asset_id, (relpath, size, mtime_ns) in zip(ids, sightings, strict=True)],
        )
        return ids

    def claim(
        self, from_states: Sequence[str], working: str, now: float, limit: int, quota: Quota | None = None,
        max_bytes: int | None = None,
    ) -> list[Asset]:
        """Move up to ``limit`` due rows (fewer if a ``quota`` is nearly full) into a working state and return them;
        no other worker can take them then. With ``max_bytes``, rows are taken only while the files taken before
        them hold less than that: several small files at once, a large one alone."""
        marks = ",".join("?" * len(from_states))
        # Idle workers look often; a plain read answers "nothing to do" without queueing for the write lock.
        if not self._db().conn.execute(
            f"SELECT 1 FROM assets WHERE state IN ({marks}) AND next_attempt_at <= ? LIMIT 1", (*from_states, now)
        ).fetchone():
            return []
        # Walk the claim index in order and stop at the first due rows: left to itself the planner picks the due
        # index and sorts every due row, once per claim, which makes a backlog of thousands quadratic. A quota is
        # counted inside the same statement, so claims by several workers can never overshoot it together.
        room = "?"
        extra: tuple[Any, ...] = ()
        if quota is not None:
            room = f"MAX(0, MIN(?, ? - (SELECT COUNT(*) FROM assets WHERE state IN ({','.join('?' * len(quota.states))}))))"
            extra = (quota.limit, *quota.states)
        due = (f"SELECT id, size, priority FROM assets INDEXED BY assets_claim "
               f"WHERE state IN ({marks}) AND next_attempt_at <= ? ORDER BY priority DESC, id LIMIT {room}")
        chosen = f"SELECT id FROM ({due})"
        if max_bytes is not None:  # the running total over the few rows already limited, never over the backlog
            chosen = (f"SELECT id FROM (SELECT id, SUM(size) OVER (ORDER BY priority DESC, id) - size AS before "
                      f"FROM ({due})) WHERE before < ?")
            extra = (*extra, max_bytes)
        rows = self._write_one(
            f"UPDATE assets SET state = ?, updated_at = ? WHERE id IN ({chosen}) RETURNING *",
            (working, now, *from_states, now, limit, *extra),
        )
        return sorted((self._asset(row) for row in rows), key=lambda asset: (-asset.priority, asset.id))

    def transition(self, asset: Asset, expected: str, to: str, now: float, **changes: Any) -> Asset:
        """Move one row from ``expected`` to ``to`` and set ``changes``, in one statement; raise if the row moved on."""
        rows = self._write_one(_transition_sql(changes), (to, now, *changes.values(), asset.id, expected))
        if not rows:
            raise TransitionLost(f"asset {asset.asset_id} is no longer {expected}")
        return self._asset(rows[0])

    def transition_many(self, moves: Sequence[Move], now: float) -> list[Asset | None]:
        """Several transitions in one transaction, in order; a row that moved on meanwhile comes back as None while
        the others still land.

        For a batch of quick steps this is one turn at the write lock instead of one per row: under a backlog every
        turn is a wait behind the other stages and a hand-over of the interpreter lock, which cost far more than the
        statements themselves.
        """
        landed: list[Asset | None] = []
        with self._write() as conn:
            for move in moves:
                rows = conn.execute(
                    _transition_sql(move.changes), (move.to, now, *move.changes.values(), move.asset.id, move.expected)
                ).fetchall()
                landed.append(self._asset(rows[0]) if rows else None)
        return landed

    def mark_gone(self, folder: str, relpath: str, now: float) -> list[str]:
        """A file vanished: its versions that have not reached DeepVA end quietly as ``gone``."""
        marks = ",".join("?" * len(UNSUBMITTED_STATES))
        with self._write() as conn:
            rows = conn.execute(
                f"UPDATE assets SET state = ?, updated_at = ?, last_error = 'the file disappeared' WHERE folder = ? "
                f"AND relpath = ? AND state IN ({marks}) RETURNING asset_id",
                (GONE, now, folder, relpath, *UNSUBMITTED_STATES),
            ).fetchall()
        return [row[0] for row in rows]

    def recover(self, now: float) -> dict[str, int]:
        """After a crash: rows left in a working state go back to the state before it, due at once."""
        recovered = {}
        with self._write() as conn:
            for working, before in WORKING_STATES.items():
                extra = {SUBMITTING: ", submit_attempted = 1", UPLOADING: ", upload_attempted = 1"}.get(working, "")
                cursor = conn.execute(
                    f"UPDATE assets SET state = ?, next_attempt_at = ?, updated_at = ?{extra} WHERE state = ?",
                    (before, now, now, working),
                )
                if cursor.rowcount:
                    recovered[working] = cursor.rowcount
            # a job that failed keeps the failure in job_state; its publishing row goes back to job_failed
            conn.execute(
                "UPDATE assets SET state = ? WHERE state = ? AND job_state IN ('failed', 'stopped')",
                (JOB_FAILED, COMPLETED),
            )
        return recovered

    def poll_now(self, job_id: str, now: float) -> bool:
        """A webhook said this job moved: make its row due for the tracker at once. True if there was such a row."""
        with self._write() as conn:
            return conn.execute(
                "UPDATE assets SET next_attempt_at = ? WHERE job_id = ? AND state = ?", (now, job_id, SUBMITTED)
            ).rowcount > 0

    def retry_now(self, states: Sequence[str], now: float) -> int:
        """Rows in ``states`` waiting out a failure (they carry its error) become due at once: DeepVA answers again."""
        with self._write() as conn:
            return conn.execute(
                f"UPDATE assets SET next_attempt_at = ? WHERE state IN ({','.join('?' * len(states))}) "
                "AND next_attempt_at > ? AND last_error IS NOT NULL",
                (now, *states, now),
            ).rowcount

    def requeue(self, asset: Asset, to: str, now: float) -> Asset:
        """An operator's retry or reprocess: back into the pipeline at ``to``, attempts reset."""
        with self._write() as conn:
            row = conn.execute(
                "UPDATE assets SET state = ?, attempts = 0, next_attempt_at = ?, last_error = NULL, error_retryable = NULL, "
                "updated_at = ? WHERE id = ? RETURNING *",
                (to, now, now, asset.id),
            ).fetchone()
        return self._asset(row)

    def latest_versions(self, folder: str) -> dict[str, tuple[int, int, str]]:
        """``relpath -> (size, mtime_ns, state)`` of each path's newest version, in one query.

        A rescan of a big share compares against this in memory and only calls :meth:`observe` for what differs, so
        100,000 unchanged files cost one query instead of 100,000 transactions.
        """
        rows = self._db().conn.execute(
            "SELECT relpath, size, mtime_ns, state FROM assets WHERE id IN "
            "(SELECT MAX(id) FROM assets WHERE folder = ? GROUP BY relpath)",
            (folder,),
        )
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    def observe_new_paths(
        self, folder: str, sightings: Sequence[tuple[str, int, int]], now: float
    ) -> tuple[list[tuple[str, str]], list[tuple[str, int, int]]]:
        """Record, in one transaction, every sighting ``(relpath, size, mtime_ns)`` of a path the ledger has never seen.

        A burst of 10,000 new files, or the first scan of a big share, then costs a handful of transactions instead of
        one each. Sightings of paths that already have a row are returned untouched, for :meth:`observe` to decide
        (it alone knows about versions). Returns ``([(relpath, asset_id) inserted], [sightings left over])``.
        """
        inserted: list[tuple[str, str]] = []
        leftover: list[tuple[str, int, int]] = []
        unique = list({relpath: (relpath, size, mtime) for relpath, size, mtime in sightings}.values())
        with self._write() as conn:
            for start in range(0, len(unique), 500):
                chunk = unique[start:start + 500]
                known = {
                    row[0]
                    for row in conn.execute(
                        f"SELECT DISTINCT relpath FROM assets WHERE folder = ? AND relpath IN ({','.join('?' * len(chunk))})",
                        (folder, *(relpath for relpath, _, _ in chunk)),
                    )
                }
                fresh = [sighting for sighting in chunk if sighting[0] not in known]
                leftover.extend(sighting for sighting in chunk if sighting[0] in known)
                ids = self._insert_versions(conn, folder, fresh, now)
                inserted.extend((sighting[0], asset_id) for sighting, asset_id in zip(fresh, ids, strict=True))
        return inserted, leftover

    def mark_gone_many(self, folder: str, relpaths: Sequence[str], now: float) -> list[tuple[str, str]]:
        """:meth:`mark_gone` for many paths in one transaction; returns ``[(relpath, asset_id)]`` of the rows it ended."""
        marks = ",".join("?" * len(UNSUBMITTED_STATES))
        ended: list[tuple[str, str]] = []
        paths = list(dict.fromkeys(relpaths))
        with self._write() as conn:
            for start in range(0, len(paths), 500):
                chunk = paths[start:start + 500]
                rows = conn.execute(
                    f"UPDATE assets SET state = ?, updated_at = ?, last_error = 'the file disappeared' WHERE folder = ? "
                    f"AND relpath IN ({','.join('?' * len(chunk))}) AND state IN ({marks}) RETURNING relpath, asset_id",
                    (GONE, now, folder, *chunk, *UNSUBMITTED_STATES),
                ).fetchall()
                ended.extend((row[0], row[1]) for row in rows)
        return ended

    def adopt_mtime(self, row_id: int, mtime_ns: int, now: float) -> bool:
        """A remount reported a known file with a shifted modification time: keep the row, take the new time.

        Only for a version already identified by its content (see discovery's re-identification); False when another
        row already holds that exact version.
        """
        try:
            with self._write() as conn:
                return conn.execute(
                    "UPDATE assets SET mtime_ns = ?, updated_at = ? WHERE id = ?", (mtime_ns, now, row_id)
                ).rowcount == 1
        except sqlite3.IntegrityError:
            return False

    # -- operator queries

    def latest_version(self, folder: str, relpath: str) -> Asset | None:
        """The newest version recorded for a path: the one an operator means when naming the file."""
        row = self._db().conn.execute(
            "SELECT * FROM assets WHERE folder = ? AND relpath = ? ORDER BY id DESC LIMIT 1", (folder, relpath)
        ).fetchone()
        return self._asset(row) if row else None

    def oldest_waiting(self) -> Asset | None:
        """The longest-known row that has not reached a final state: where a stuck pipeline shows first."""
        marks = ",".join("?" * len(FINAL_STATES))
        row = self._db().conn.execute(
            f"SELECT * FROM assets WHERE state NOT IN ({marks}) ORDER BY created_at, id LIMIT 1", tuple(FINAL_STATES)
        ).fetchone()
        return self._asset(row) if row else None

    def recent_errors(self, limit: int = 10) -> list[Asset]:
        """Rows whose last step failed (failed for good, or being retried), most recently changed first.

        ``gone`` and ``superseded`` rows carry a reason in ``last_error`` too, but those are not errors.
        """
        rows = self._db().conn.execute(
            "SELECT * FROM assets WHERE last_error IS NOT NULL AND state NOT IN (?, ?, ?) "
            "ORDER BY updated_at DESC, id DESC LIMIT ?",
            (GONE, SUPERSEDED, PUBLISHED, limit),
        ).fetchall()
        return [self._asset(row) for row in rows]

    def forget_idle(self, folder: str, relpath: str) -> int:
        """Delete every version of a path unless one is in a working state (a worker holds it); returns rows deleted.

        All or nothing: if any version is being worked on, nothing is deleted and 0 is returned, so that the worker's
        commit does not land on a half-forgotten path.
        """
        marks = ",".join("?" * len(WORKING_STATES))
        with self._write() as conn:
            busy = conn.execute(
                f"SELECT COUNT(*) FROM assets WHERE folder = ? AND relpath = ? AND state IN ({marks})",
                (folder, relpath, *WORKING_STATES),
            ).fetchone()[0]
            if busy:
                return 0
            return conn.execute("DELETE FROM assets WHERE folder = ? AND relpath = ?", (folder, relpath)).rowcount


@dataclass(frozen=True)
class Move:
    """One transition of a batch (see ``Ledger.transition_many``)."""

    asset: Asset
    expected: str
    to: str
    changes: Mapping[str, Any]


def _transition_sql(changes: Mapping[str, Any]) -> str:
    """The statement that moves one row and sets ``changes`` (checked against the columns a transition may set)."""
    for name in changes:
        if name not in _ASSET_COLUMNS or name in ("id", "asset_id", "state"):
            raise ValueError(f"not a column a transition may set: {name}")
    assignments = "".join(f", {name} = ?" for name in changes)
    return f"UPDATE assets SET state = ?, updated_at = ?{assignments} WHERE id = ? AND state = ? RETURNING *"


def new_asset_id() -> str:
    """The asset id doubles as the DeepVA job tag, so it must be unique across installs and restarts."""
    return f"dvw-{uuid.uuid4().hex}"


def dumps_errors(errors: Sequence[str]) -> str:
    return json.dumps(list(errors), ensure_ascii=False)
