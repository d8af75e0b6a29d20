"""The SQLite ledger: the embedded default, and the only module that speaks SQLite's SQL.

One file in WAL mode; each thread gets its own connection. Writes from this process queue on a Python lock before
they take SQLite's (``BEGIN IMMEDIATE``): SQLite's own busy handler sleeps in growing steps, which under many small
transactions costs more than the work. Other processes (an operator's command) meet SQLite's lock and its timeout.

The schema is built and migrated by sqlite-utils' :class:`~sqlite_utils.migrations.Migrations`, each step in one
transaction; every step is written so that it also completes a ledger made by an older release of this program.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from deepva_watch.ledger.model import (
    Asset,
    HistoryEntry,
    LedgerError,
    Move,
    Node,
    Observation,
    Quota,
    asset_from_row,
    history_row,
    landed_alone,
    new_asset_ids,
    transition_sql,
)
from deepva_watch.ledger.protocol import Latest
from deepva_watch.states import AT_DEEPVA, FINAL, HOME, UNSUBMITTED, State

S = State

MIGRATIONS = Migrations("deepva-watch-ledger")


def _has_column(db: sqlite_utils.Database, table: str, column: str) -> bool:
    return column in db[table].columns_dict


@MIGRATIONS(name="assets")
def _assets(db: sqlite_utils.Database) -> None:
    db.execute("""
        CREATE TABLE IF NOT EXISTS assets (
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
            content_hash TEXT, mime TEXT, kind TEXT, last_error TEXT, error_retryable INTEGER,
            storage_url TEXT, storage_id TEXT, submit_attempted INTEGER NOT NULL DEFAULT 0,
            job_id TEXT, job_state TEXT, job_progress REAL, job_errors TEXT, xmp_path TEXT, json_path TEXT,
            submitted_at REAL, completed_at REAL, published_at REAL
        )""")
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS assets_version ON assets (folder, relpath, size, mtime_ns)")
    db.execute("CREATE INDEX IF NOT EXISTS assets_due ON assets (state, next_attempt_at)")
    db.execute("CREATE INDEX IF NOT EXISTS assets_path ON assets (folder, relpath)")


@MIGRATIONS(name="priority-and-failures")
def _priority(db: sqlite_utils.Database) -> None:
    for column in ("priority", "job_failures", "upload_attempted"):
        if not _has_column(db, "assets", column):
            db.execute(f"ALTER TABLE assets ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX IF NOT EXISTS assets_claim ON assets (state, priority DESC, id)")


@MIGRATIONS(name="settings")
def _settings(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL)")
    db.execute("CREATE INDEX IF NOT EXISTS assets_job ON assets (job_id)")


@MIGRATIONS(name="clean-up-mark")
def _clean_up(db: sqlite_utils.Database) -> None:
    if not _has_column(db, "assets", "cleanup_pending"):
        db.execute("ALTER TABLE assets ADD COLUMN cleanup_pending INTEGER NOT NULL DEFAULT 0")
    db.execute("CREATE INDEX IF NOT EXISTS assets_cleanup ON assets (updated_at) WHERE cleanup_pending = 1")


@MIGRATIONS(name="state-machine-and-history")
def _state_machine(db: sqlite_utils.Database) -> None:
    """The stage a file failed in, the finished job kept for publishing, failed jobs' own working state, the history
    of every transition, and clean-ups due by ``next_attempt_at``. Rows failed before ``failed_in`` existed get the
    stage their columns point to."""
    for column in ("failed_in", "job_snapshot"):
        if not _has_column(db, "assets", column):
            db.execute(f"ALTER TABLE assets ADD COLUMN {column} TEXT")
    db.execute("UPDATE assets SET state = 'job_failed' WHERE state IN ('completed', 'publishing') "
               "AND job_state IN ('failed', 'stopped')")
    db.execute("""
        UPDATE assets SET failed_in = CASE
            WHEN job_state IN ('failed', 'stopped') THEN 'report'
            WHEN job_state = 'completed' THEN 'publish'
            WHEN job_id IS NOT NULL THEN 'track'
            WHEN storage_url IS NOT NULL THEN 'submit'
            WHEN kind IS NULL THEN 'sniff'
            ELSE 'upload' END
        WHERE state = 'failed' AND failed_in IS NULL""")
    db.execute("""
        CREATE TABLE IF NOT EXISTS history (
            id INTEGER PRIMARY KEY,
            asset INTEGER NOT NULL,
            at REAL NOT NULL,
            from_state TEXT,
            to_state TEXT NOT NULL,
            stage TEXT,
            attempt INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            job_id TEXT
        )""")
    db.execute("CREATE INDEX IF NOT EXISTS history_asset ON history (asset, id)")
    db.execute("DROP INDEX IF EXISTS assets_cleanup")
    db.execute("CREATE INDEX IF NOT EXISTS assets_cleanup_due ON assets (next_attempt_at) WHERE cleanup_pending = 1")
    db.execute("DROP TABLE IF EXISTS migrations")  # the record kept by releases before these migrations


@MIGRATIONS(name="file-identity-and-job-time")
def _file_identity(db: sqlite_utils.Database) -> None:
    for column, kind in (("device", "INTEGER"), ("inode", "INTEGER"), ("job_seconds", "REAL")):
        if not _has_column(db, "assets", column):
            db.execute(f"ALTER TABLE assets ADD COLUMN {column} {kind}")
    db.execute("CREATE INDEX IF NOT EXISTS assets_finished ON assets (kind, completed_at) WHERE job_seconds IS NOT NULL")


@MIGRATIONS(name="folders-and-media-time")
def _folders(db: sqlite_utils.Database) -> None:
    """When each folder was first scanned (its ``existing`` rule applies to that scan only; folders with rows count as
    scanned), and each video's duration for the daily budget."""
    db.execute("CREATE TABLE IF NOT EXISTS folders (folder TEXT PRIMARY KEY, first_seen_at REAL NOT NULL)")
    db.execute("INSERT OR IGNORE INTO folders SELECT folder, MIN(created_at) FROM assets GROUP BY folder")
    if not _has_column(db, "assets", "media_seconds"):
        db.execute("ALTER TABLE assets ADD COLUMN media_seconds REAL")
    db.execute("CREATE INDEX IF NOT EXISTS assets_submitted ON assets (submitted_at) WHERE submitted_at IS NOT NULL")


@MIGRATIONS(name="actions")
def _actions(db: sqlite_utils.Database) -> None:
    """What ``on_done`` and ``on_failed`` actions need: where a row is going, how far its actions got, what the last
    one said and where the file went; and a note in the story for each action."""
    for column, kind in (("outcome", "TEXT"), ("actions_folder", "TEXT"), ("actions_done", "INTEGER NOT NULL DEFAULT 0"),
                         ("last_action", "TEXT"), ("move_target", "TEXT"), ("location", "TEXT")):
        if not _has_column(db, "assets", column):
            db.execute(f"ALTER TABLE assets ADD COLUMN {column} {kind}")
    if not _has_column(db, "history", "note"):
        db.execute("ALTER TABLE history ADD COLUMN note TEXT")


@MIGRATIONS(name="nodes")
def _nodes(db: sqlite_utils.Database) -> None:
    """The daemons that worked on the ledger (on SQLite one at a time), for status and the status page."""
    db.execute("CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, "
               "started_at REAL NOT NULL, last_beat REAL NOT NULL, lease_seconds REAL NOT NULL, left_at REAL)")


_KNOWN_MIGRATIONS = frozenset(migration.name for migration in MIGRATIONS.pending(sqlite_utils.Database(memory=True)))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino


def _hold(path: Path) -> IO[str]:
    """The lock that makes a daemon the only one on this ledger (released by the kernel when the process ends)."""
    lock_path = path.with_name(path.name + ".lock")
    handle = open(lock_path, "a+", encoding="ascii")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise LedgerError(f"another deepva-watch (pid {holder}) is running on the ledger {path}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _marks(values: Sized) -> str:
    return ",".join("?" * len(values))


_OVERDUE = f"state IN ({_marks(AT_DEEPVA)}) AND submitted_at <= ?"
_HISTORY_SQL = ("INSERT INTO history (asset, at, from_state, to_state, stage, attempt, error, job_id, note) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


class SqliteLedger:
    """Thread-safe access to one ledger file."""

    def __init__(self, path: Path, *, readonly: bool = False, exclusive: bool = False) -> None:
        """``exclusive``: this process is the one daemon on the ledger (a lock next to it says so, with its pid);
        another daemon is refused, readers are not."""
        self.path = path
        self._readonly = readonly
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._priorities: dict[str, int] = {}
        self._lock_file: IO[str] | None = None
        self._node: str | None = None
        self._created = False
        try:
            if not readonly:
                path.parent.mkdir(parents=True, exist_ok=True)
                if exclusive:
                    self._lock_file = _hold(path)
                self._migrate()
            else:
                self._check_version()
            self._created = True
            self._identity = _identity(path)
        except sqlite3.DatabaseError as error:
            raise LedgerError(f"the ledger {path} cannot be used: {error}") from None
        except (FileExistsError, NotADirectoryError):
            raise LedgerError(f"the ledger {path} cannot be used: {path.parent} is not a directory") from None
        except OSError as error:
            raise LedgerError(f"the ledger {path} cannot be used: {error.strerror or error}") from None

    def problem(self) -> str | None:
        """Why the ledger can no longer be trusted (its file was removed or replaced under us), or None."""
        now = _identity(self.path)
        if now is None:
            return f"the ledger file {self.path} was removed while the daemon ran"
        if now != self._identity:
            return f"the ledger file {self.path} was replaced while the daemon ran"
        return None

    def outage(self) -> str | None:
        return None  # a file that is there answers (a full disk is reported by the health check)

    # -- connections and transactions ------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # Only the first connection may create the file: a thread that connects after the ledger was removed
            # must fail, not start an empty ledger that would have every file done again.
            mode = "ro" if self._readonly else "rw" if self._created else "rwc"
            conn = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode={mode}", uri=True, isolation_level=None,
                                   timeout=30)
            if not self._readonly:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, the write lock taken up front (a read-then-write never deadlocks)."""
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection and give up the daemon's lock, if held."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _migrate(self) -> None:
        db = sqlite_utils.Database(self._conn())
        with self._write_lock:
            self._refuse_newer(db)
            MIGRATIONS.apply(db)

    def _check_version(self) -> None:
        self._refuse_newer(sqlite_utils.Database(self._conn()))

    @staticmethod
    def _refuse_newer(db: sqlite_utils.Database) -> None:
        unknown = sorted({migration.name for migration in MIGRATIONS.applied(db)} - _KNOWN_MIGRATIONS)
        if unknown:
            raise LedgerError(f"the ledger was written by a newer deepva-watch (schema steps {', '.join(unknown)}); "
                              "install that version again or use another ledger")

    # -- reading -----------------------------------------------------------------------------------------------------

    @staticmethod
    def _asset(row: sqlite3.Row) -> Asset:
        return asset_from_row(row)  # type: ignore[arg-type]  # a Row reads by column name

    def _select(self, sql: str, parameters: Sequence[Any] = ()) -> list[Asset]:
        return [self._asset(row) for row in self._conn().execute(sql, parameters).fetchall()]

    def get(self, row_id: int) -> Asset | None:
        rows = self._select("SELECT * FROM assets WHERE id = ?", (row_id,))
        return rows[0] if rows else None

    def by_asset_id(self, asset_id: str) -> Asset | None:
        rows = self._select("SELECT * FROM assets WHERE asset_id = ?", (asset_id,))
        return rows[0] if rows else None

    def versions(self, folder: str, relpath: str) -> list[Asset]:
        return self._select("SELECT * FROM assets WHERE folder = ? AND relpath = ? ORDER BY id", (folder, relpath))

    def latest_version(self, folder: str, relpath: str) -> Asset | None:
        rows = self._select("SELECT * FROM assets WHERE folder = ? AND relpath = ? ORDER BY id DESC LIMIT 1",
                            (folder, relpath))
        return rows[0] if rows else None

    def due(self, states: Sequence[State], now: float, limit: int) -> list[Asset]:
        return self._select(
            f"SELECT * FROM assets WHERE state IN ({_marks(states)}) AND next_attempt_at <= ? "
            f"ORDER BY next_attempt_at, id LIMIT ?", (*states, now, limit))

    def next_due_at(self, states: Sequence[State]) -> float | None:
        row = self._conn().execute(
            f"SELECT MIN(next_attempt_at) FROM assets WHERE state IN ({_marks(states)})", tuple(states)).fetchone()
        return float(row[0]) if row[0] is not None else None

    def count_in(self, states: Sequence[State]) -> int:
        row = self._conn().execute(f"SELECT COUNT(*) FROM assets WHERE state IN ({_marks(states)})",
                                   tuple(states)).fetchone()
        return int(row[0])

    def count_by_state(self) -> dict[str, int]:
        rows = self._conn().execute("SELECT state, COUNT(*) FROM assets GROUP BY state").fetchall()
        return {row[0]: row[1] for row in rows}

    def count_by_folder_and_state(self) -> dict[tuple[str, str], int]:
        rows = self._conn().execute("SELECT folder, state, COUNT(*) FROM assets GROUP BY folder, state").fetchall()
        return {(row[0], row[1]): row[2] for row in rows}

    def latest_versions(self, folder: str) -> Latest:
        rows = self._conn().execute(
            "SELECT relpath, size, mtime_ns, state FROM assets WHERE id IN "
            "(SELECT MAX(id) FROM assets WHERE folder = ? GROUP BY relpath)", (folder,))
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    def latest_versions_page(self, folder: str, after: str, limit: int) -> list[tuple[str, int, int, str]]:
        # The inner query walks assets_path (folder, relpath, rowid) in order and stops after ``limit`` paths: a page
        # costs its own rows, wherever it starts. SQLite compares TEXT as UTF-8 bytes, which is code-point order.
        rows = self._conn().execute(
            "SELECT relpath, size, mtime_ns, state FROM assets WHERE id IN "
            "(SELECT MAX(id) FROM assets WHERE folder = ? AND relpath > ? GROUP BY relpath ORDER BY relpath LIMIT ?) "
            "ORDER BY relpath", (folder, after, limit)).fetchall()
        return [(row[0], row[1], row[2], row[3]) for row in rows]

    def pending_clean_ups(self, now: float, limit: int) -> list[Asset]:
        return self._select(
            "SELECT * FROM assets INDEXED BY assets_cleanup_due WHERE cleanup_pending = 1 AND next_attempt_at <= ? "
            "AND state = ? ORDER BY next_attempt_at LIMIT ?", (now, S.PUBLISHED, limit))

    def query(
        self, *, states: Sequence[str] = (), folder: str | None = None, relpaths: Sequence[str] = (),
        created_before: float | None = None, created_after: float | None = None, limit: int = 1000,
    ) -> list[Asset]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, values in (("state", states), ("relpath", relpaths)):
            if values:
                clauses.append(f"{column} IN ({_marks(values)})")
                params.extend(values)
        for condition, value in (("folder = ?", folder), ("created_at <= ?", created_before),
                                 ("created_at >= ?", created_after)):
            if value is not None:
                clauses.append(condition)
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return self._select(f"SELECT * FROM assets {where} ORDER BY id DESC LIMIT ?", (*params, limit))

    def oldest_waiting(self) -> Asset | None:
        rows = self._select(f"SELECT * FROM assets WHERE state NOT IN ({_marks(FINAL)}) ORDER BY created_at, id LIMIT 1",
                            tuple(FINAL))
        return rows[0] if rows else None

    def overdue_jobs(self, submitted_before: float, limit: int = 10) -> list[Asset]:
        return self._select(f"SELECT * FROM assets WHERE {_OVERDUE} ORDER BY submitted_at, id LIMIT ?",
                            (*AT_DEEPVA, submitted_before, limit))

    def count_overdue_jobs(self, submitted_before: float, cap: int) -> int:
        return int(self._conn().execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM assets WHERE {_OVERDUE} LIMIT ?)",
                                        (*AT_DEEPVA, submitted_before, cap)).fetchone()[0])

    def recent_errors(self, limit: int = 10) -> list[Asset]:
        """Rows whose last step failed, newest first (``gone``, ``superseded`` and ``published`` carry no error)."""
        return self._select(
            "SELECT * FROM assets WHERE last_error IS NOT NULL AND state NOT IN (?, ?, ?, ?) "
            "ORDER BY updated_at DESC, id DESC LIMIT ?", (S.GONE, S.SUPERSEDED, S.PUBLISHED, S.SKIPPED, limit))

    def history(self, asset_ids: Sequence[str]) -> list[HistoryEntry]:
        if not asset_ids:
            return []
        rows = self._conn().execute(
            f"SELECT assets.asset_id, history.* FROM history JOIN assets ON assets.id = history.asset "
            f"WHERE assets.asset_id IN ({_marks(asset_ids)}) ORDER BY history.id", tuple(asset_ids)).fetchall()
        return [HistoryEntry(row["asset_id"], row["at"], row["from_state"], row["to_state"], row["stage"],
                             row["attempt"], row["error"], row["job_id"], row["note"]) for row in rows]

    def finished_since(self, after: int, limit: int) -> list[tuple[int, float, Asset]]:
        rows = self._conn().execute(
            "SELECT history.id AS cursor, history.at AS finished_at, assets.* FROM history JOIN assets ON assets.id = "
            "history.asset WHERE history.id > ? AND history.to_state IN (?, ?) ORDER BY history.id LIMIT ?",
            (after, S.PUBLISHED, S.FAILED, limit)).fetchall()
        return [(row["cursor"], row["finished_at"], self._asset(row)) for row in rows]

    def recent_job_seconds(self, kind: str, limit: int) -> list[float]:
        rows = self._conn().execute(
            "SELECT job_seconds FROM assets INDEXED BY assets_finished WHERE kind = ? AND job_seconds IS NOT NULL "
            "ORDER BY completed_at DESC LIMIT ?", (kind, limit)).fetchall()
        return [float(row[0]) for row in rows]

    def get_setting(self, name: str) -> str | None:
        row = self._conn().execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else None

    def integrity_ok(self) -> bool:
        return bool(self._conn().execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    # -- discovery ---------------------------------------------------------------------------------------------------

    def observe(self, folder: str, relpath: str, size: int, mtime_ns: int, now: float) -> Observation:
        with self._write() as conn:
            latest = conn.execute(
                "SELECT * FROM assets WHERE folder = ? AND relpath = ? ORDER BY id DESC LIMIT 1", (folder, relpath)
            ).fetchone()
            if latest is not None and latest["size"] == size and latest["mtime_ns"] == mtime_ns:
                if latest["state"] == S.GONE:
                    conn.execute(
                        "UPDATE assets SET state = ?, stable_since = ?, next_attempt_at = ?, attempts = 0, "
                        "last_error = NULL, updated_at = ? WHERE id = ?", (S.SETTLING, now, now, now, latest["id"]))
                    return Observation("revived", latest["asset_id"])
                return Observation("known", latest["asset_id"])
            if latest is not None and latest["state"] == S.SETTLING:
                clash = conn.execute(
                    "SELECT id FROM assets WHERE folder = ? AND relpath = ? AND size = ? AND mtime_ns = ?",
                    (folder, relpath, size, mtime_ns)).fetchone()
                if clash is not None:  # the file went back to a version we already hold: that one stands
                    conn.execute("DELETE FROM history WHERE asset = ?", (latest["id"],))
                    conn.execute("DELETE FROM assets WHERE id = ?", (latest["id"],))
                    return Observation("known", None)
                conn.execute("UPDATE assets SET size = ?, mtime_ns = ?, stable_since = ?, updated_at = ? WHERE id = ?",
                             (size, mtime_ns, now, now, latest["id"]))
                return Observation("changed", latest["asset_id"])
            newer = "a newer version of the file arrived"
            rows = conn.execute(
                f"UPDATE assets SET state = ?, updated_at = ?, last_error = ? WHERE folder = ? AND relpath = ? "
                f"AND state IN ({_marks(UNSUBMITTED)}) RETURNING id, state, attempts",
                (S.SUPERSEDED, now, newer, folder, relpath, *UNSUBMITTED)).fetchall()
            conn.executemany(_HISTORY_SQL, [(row[0], now, None, S.SUPERSEDED, "discover", row[2], newer, None, None)
                                            for row in rows])
            (asset_id,) = self._insert_versions(conn, folder, [(relpath, size, mtime_ns)], now)
            return Observation("new", asset_id)

    def _insert_versions(
        self, conn: sqlite3.Connection, folder: str, sightings: Sequence[tuple[str, int, int]], now: float,
        skipped: Collection[str] = frozenset(),
    ) -> list[str]:
        priority = self._priorities.get(folder, 0)
        ids = new_asset_ids(len(sightings))
        conn.executemany(
            "INSERT INTO assets (asset_id, folder, relpath, size, mtime_ns, state, stable_since, next_attempt_at, "
            "created_at, updated_at, priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(asset_id, folder, relpath, size, mtime_ns, S.SKIPPED if relpath in skipped else S.SETTLING, now, now,
              now, now, priority)
             for asset_id, (relpath, size, mtime_ns) in zip(ids, sightings, strict=True)])
        return ids

    def folder_first_seen(self, folder: str) -> float | None:
        row = self._conn().execute("SELECT first_seen_at FROM folders WHERE folder = ?", (folder,)).fetchone()
        return None if row is None else float(row[0])

    def mark_folder_seen(self, folder: str, now: float) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO folders (folder, first_seen_at) VALUES (?, ?)", (folder, now))

    def spent_since(self, since: float) -> tuple[float, int]:
        row = self._conn().execute(
            "SELECT COALESCE(SUM(CASE WHEN kind = 'video' THEN COALESCE(media_seconds, 0) END), 0), "
            "COUNT(CASE WHEN kind = 'image' THEN 1 END) FROM assets INDEXED BY assets_submitted "
            "WHERE submitted_at IS NOT NULL AND submitted_at >= ?", (since,)).fetchone()
        return float(row[0]), int(row[1])

    def observe_new_paths(
        self, folder: str, sightings: Sequence[tuple[str, int, int]], now: float, *,
        skipped: Collection[str] = frozenset(),
    ) -> tuple[list[tuple[str, str]], list[tuple[str, int, int]]]:
        inserted: list[tuple[str, str]] = []
        leftover: list[tuple[str, int, int]] = []
        unique = list({relpath: (relpath, size, mtime) for relpath, size, mtime in sightings}.values())
        with self._write() as conn:
            for start in range(0, len(unique), 500):
                chunk = unique[start:start + 500]
                known = {row[0] for row in conn.execute(
                    f"SELECT DISTINCT relpath FROM assets WHERE folder = ? AND relpath IN ({_marks(chunk)})",
                    (folder, *(relpath for relpath, _, _ in chunk)))}
                fresh = [sighting for sighting in chunk if sighting[0] not in known]
                leftover.extend(sighting for sighting in chunk if sighting[0] in known)
                ids = self._insert_versions(conn, folder, fresh, now, skipped)
                inserted.extend((sighting[0], asset_id) for sighting, asset_id in zip(fresh, ids, strict=True)
                                if sighting[0] not in skipped)
        return inserted, leftover

    def mark_gone_many(self, folder: str, relpaths: Sequence[str], now: float) -> list[tuple[str, str]]:
        ended: list[tuple[str, str]] = []
        paths = list(dict.fromkeys(relpaths))
        with self._write() as conn:
            for start in range(0, len(paths), 500):
                chunk = paths[start:start + 500]
                rows = conn.execute(
                    f"UPDATE assets SET state = ?, updated_at = ?, last_error = 'the file disappeared' WHERE folder = ? "
                    f"AND relpath IN ({_marks(chunk)}) AND state IN ({_marks(UNSUBMITTED)}) "
                    f"RETURNING id, relpath, asset_id, state",
                    (S.GONE, now, folder, *chunk, *UNSUBMITTED)).fetchall()
                conn.executemany(_HISTORY_SQL, [(row[0], now, None, S.GONE, "discover", 0, "the file disappeared",
                                                 None, None) for row in rows])
                ended.extend((row[1], row[2]) for row in rows)
        return ended

    def adopt_mtime(self, row_id: int, mtime_ns: int, now: float) -> bool:
        try:
            with self._write() as conn:
                return conn.execute("UPDATE assets SET mtime_ns = ?, updated_at = ? WHERE id = ?",
                                    (mtime_ns, now, row_id)).rowcount == 1
        except sqlite3.IntegrityError:
            return False

    # -- the flow ----------------------------------------------------------------------------------------------------

    def claim(
        self, from_states: Sequence[State], working: State, now: float, limit: int, *, stage: str,
        quota: Quota | None = None, max_bytes: int | None = None,
    ) -> list[Asset]:
        # Idle workers look often; a plain read answers "nothing to do" without queueing for the write lock.
        if not self._conn().execute(
            f"SELECT 1 FROM assets WHERE state IN ({_marks(from_states)}) AND next_attempt_at <= ? LIMIT 1",
            (*from_states, now)).fetchone():
            return []
        # The claim index is walked in order (left to itself the planner sorts every due row on each claim, which
        # makes a large backlog quadratic); a quota is counted inside the same statement.
        room = "?"
        extra: tuple[Any, ...] = ()
        if quota is not None:
            room = f"MAX(0, MIN(?, ? - (SELECT COUNT(*) FROM assets WHERE state IN ({_marks(quota.states)}))))"
            extra = (quota.limit, *quota.states)
        due = (f"SELECT id, size, priority FROM assets INDEXED BY assets_claim "
               f"WHERE state IN ({_marks(from_states)}) AND next_attempt_at <= ? ORDER BY priority DESC, id LIMIT {room}")
        chosen = f"SELECT id FROM ({due})"
        if max_bytes is not None:  # a running total over the few rows already limited, never over the backlog
            chosen = (f"SELECT id FROM (SELECT id, SUM(size) OVER (ORDER BY priority DESC, id) - size AS before "
                      f"FROM ({due})) WHERE before < ?")
            extra = (*extra, max_bytes)
        with self._write() as conn:
            rows = [self._asset(row) for row in conn.execute(
                f"UPDATE assets SET state = ?, updated_at = ? WHERE id IN ({chosen}) RETURNING *",
                (working, now, *from_states, now, limit, *extra)).fetchall()]
            conn.executemany(_HISTORY_SQL, [(row.id, now, HOME[working], working, stage, row.attempts, None,
                                             row.job_id, None) for row in rows])
        return sorted(rows, key=lambda asset: (-asset.priority, asset.id))

    def transition(self, asset: Asset, expected: State, to: State, now: float, *, stage: str | None = None,
                   **changes: object) -> Asset:
        move = Move(asset, expected, to, changes)
        return landed_alone(self.transition_many([move], now, stage=stage), move)

    def transition_many(self, moves: Sequence[Move], now: float, *, stage: str | None = None) -> list[Asset | None]:
        statements = [transition_sql(move.changes, "?") for move in moves]  # refused before anything is written
        landed: list[Asset | None] = []
        with self._write() as conn:
            history = []
            for move, sql in zip(moves, statements, strict=True):
                rows = conn.execute(sql, (move.to, now, *move.changes.values(), move.asset.id, move.expected)).fetchall()
                row = self._asset(rows[0]) if rows else None
                landed.append(row)
                if row is not None and (entry := history_row(row, move, now, stage)) is not None:
                    history.append(entry)
            conn.executemany(_HISTORY_SQL, history)
        return landed

    # -- nodes (one at a time: the daemon's lock keeps a second one out) ---------------------------------------------

    def join(self, name: str, host: str, pid: int, now: float, lease_seconds: float) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO nodes (name, host, pid, started_at, last_beat, lease_seconds, left_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, NULL) ON CONFLICT(name) DO UPDATE SET host = excluded.host, "
                         "pid = excluded.pid, started_at = excluded.started_at, last_beat = excluded.last_beat, "
                         "lease_seconds = excluded.lease_seconds, left_at = NULL",
                         (name, host, pid, now, now, lease_seconds))
            conn.execute("UPDATE nodes SET left_at = ? WHERE name != ? AND left_at IS NULL", (now, name))
        self._node = name

    def heartbeat(self, now: float) -> None:
        if self._node is not None:
            with self._write() as conn:
                conn.execute("UPDATE nodes SET last_beat = ? WHERE name = ?", (now, self._node))

    def take_over(self, now: float) -> dict[str, int]:
        return {}  # no other node can have held anything

    def leave(self, now: float) -> None:
        if self._node is not None:
            with self._write() as conn:
                conn.execute("UPDATE nodes SET left_at = ?, last_beat = ? WHERE name = ?", (now, now, self._node))

    def leads(self, role: str) -> bool:
        return True

    def nodes(self) -> list[Node]:
        held = self.count_in(tuple(HOME))
        try:
            rows = self._conn().execute("SELECT * FROM nodes ORDER BY name").fetchall()
        except sqlite3.OperationalError:  # read-only, on a ledger no daemon of this version has opened yet
            return []
        return [Node(row["name"], row["host"], row["pid"], row["started_at"], row["last_beat"], row["lease_seconds"],
                     row["left_at"], held if row["left_at"] is None else 0) for row in rows]

    def recover(self, now: float) -> dict[str, int]:
        recovered = {}
        with self._write() as conn:
            for working, home in HOME.items():
                remember = {S.SUBMITTING: ", submit_attempted = 1", S.UPLOADING: ", upload_attempted = 1"}.get(working, "")
                rows = conn.execute(
                    f"UPDATE assets SET state = ?, next_attempt_at = ?, updated_at = ?{remember} WHERE state = ? "
                    f"RETURNING id, attempts, job_id", (home, now, now, working)).fetchall()
                conn.executemany(_HISTORY_SQL, [(row[0], now, working, home, "recover", row[1], None, row[2], None)
                                                for row in rows])
                if rows:
                    recovered[str(working)] = len(rows)
        return recovered

    def poll_now(self, job_id: str, now: float) -> bool:
        with self._write() as conn:
            return conn.execute(f"UPDATE assets SET next_attempt_at = ? WHERE job_id = ? AND state IN ({_marks(AT_DEEPVA)})",
                                (now, job_id, *AT_DEEPVA)).rowcount > 0

    def retry_now(self, states: Sequence[State], now: float) -> int:
        with self._write() as conn:
            return int(conn.execute(
                f"UPDATE assets SET next_attempt_at = ? WHERE state IN ({_marks(states)}) "
                "AND next_attempt_at > ? AND last_error IS NOT NULL", (now, *states, now)).rowcount)

    def set_folder_priorities(self, priorities: Mapping[str, int]) -> None:
        self._priorities = dict(priorities)
        if self._readonly:
            return
        with self._write() as conn:
            for folder, priority in priorities.items():
                conn.execute(f"UPDATE assets SET priority = ? WHERE folder = ? AND priority != ? AND state NOT IN "
                             f"({_marks(FINAL)})", (priority, folder, priority, *FINAL))

    def clean_up_done(self, row_id: int) -> None:
        with self._write() as conn:
            conn.execute("UPDATE assets SET cleanup_pending = 0 WHERE id = ?", (row_id,))

    def clean_up_later(self, row_id: int, until: float) -> None:
        with self._write() as conn:
            conn.execute("UPDATE assets SET next_attempt_at = ? WHERE id = ? AND cleanup_pending = 1", (until, row_id))

    # -- settings and operators --------------------------------------------------------------------------------------

    def advance_setting(self, name: str, value: int, now: float) -> bool:
        with self._write() as conn:
            row = conn.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
            if row is not None and int(row[0]) >= value:
                return False
            conn.execute("INSERT INTO settings (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE "
                         "SET value = excluded.value, updated_at = excluded.updated_at", (name, str(value), now))
            return True

    def retirement_candidates(self, before: float, after_id: int, limit: int) -> list[Asset]:
        return self._select(f"SELECT * FROM assets WHERE id > ? AND updated_at < ? AND state IN ({_marks(FINAL)}) "
                            "ORDER BY id LIMIT ?", (after_id, before, *FINAL, limit))

    def retire(self, row_ids: Sequence[int], before: float) -> int:
        retired = 0
        with self._write() as conn:
            for start in range(0, len(row_ids), 500):
                chunk = row_ids[start:start + 500]
                gone = [row[0] for row in conn.execute(
                    f"DELETE FROM assets WHERE id IN ({_marks(chunk)}) AND updated_at < ? AND state IN "
                    f"({_marks(FINAL)}) RETURNING id", (*chunk, before, *FINAL))]
                conn.execute(f"DELETE FROM history WHERE asset IN ({_marks(gone)})", gone)
                retired += len(gone)
        return retired

    def prune_history(self, before: float, limit: int) -> int:
        with self._write() as conn:
            return int(conn.execute(
                f"DELETE FROM history WHERE id IN (SELECT history.id FROM history JOIN assets ON assets.id = "
                f"history.asset WHERE history.at < ? AND assets.state IN ({_marks(FINAL)}) ORDER BY history.id "
                "LIMIT ?)", (before, *FINAL, limit)).rowcount)

    def forget_idle(self, folder: str, relpath: str) -> int:
        with self._write() as conn:
            busy = conn.execute(f"SELECT COUNT(*) FROM assets WHERE folder = ? AND relpath = ? AND state IN "
                                f"({_marks(HOME)})", (folder, relpath, *HOME)).fetchone()[0]
            if busy:
                return 0
            conn.execute("DELETE FROM history WHERE asset IN (SELECT id FROM assets WHERE folder = ? AND relpath = ?)",
                         (folder, relpath))
            return int(conn.execute("DELETE FROM assets WHERE folder = ? AND relpath = ?", (folder, relpath)).rowcount)
