"""What only the SQLite ledger has: a file on disk, read-only handles, and migrations from earlier releases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from deepva_watch.ledger import LedgerError, SqliteLedger
from deepva_watch.states import State

# The schema as releases before the sqlite-utils migrations wrote it (steps 1 to 3 of their own migration table).
_OLD_SCHEMA = """
CREATE TABLE migrations (step INTEGER PRIMARY KEY, applied_at TEXT NOT NULL);
CREATE TABLE assets (
    id INTEGER PRIMARY KEY, asset_id TEXT NOT NULL UNIQUE, folder TEXT NOT NULL, relpath TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0, stable_since REAL NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, content_hash TEXT, mime TEXT, kind TEXT, last_error TEXT, error_retryable INTEGER,
    storage_url TEXT, storage_id TEXT, submit_attempted INTEGER NOT NULL DEFAULT 0, job_id TEXT, job_state TEXT,
    job_progress REAL, job_errors TEXT, xmp_path TEXT, json_path TEXT, submitted_at REAL, completed_at REAL,
    published_at REAL);
CREATE UNIQUE INDEX assets_version ON assets (folder, relpath, size, mtime_ns);
CREATE INDEX assets_due ON assets (state, next_attempt_at);
CREATE INDEX assets_path ON assets (folder, relpath);
ALTER TABLE assets ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE assets ADD COLUMN job_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE assets ADD COLUMN upload_attempted INTEGER NOT NULL DEFAULT 0;
CREATE INDEX assets_claim ON assets (state, priority DESC, id);
CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE INDEX assets_job ON assets (job_id);
INSERT INTO migrations VALUES (1, '2026-01-01'), (2, '2026-01-01'), (3, '2026-01-01');
"""


def _old_row(conn: sqlite3.Connection, asset_id: str, relpath: str, state: str, **columns: object) -> None:
    names = ["asset_id", "folder", "relpath", "size", "mtime_ns", "state", "stable_since", "created_at", "updated_at",
             *columns]
    values = [asset_id, "/w", relpath, 1, 1, state, 1, 1, 1, *columns.values()]
    conn.execute(f"INSERT INTO assets ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", values)


def test_a_ledger_from_an_earlier_release_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(_OLD_SCHEMA)
    _old_row(conn, "a1", "a.jpg", "published")
    _old_row(conn, "f1", "f.jpg", "failed", job_id="j1", job_state="failed", storage_url="storage://x")
    _old_row(conn, "f2", "g.jpg", "failed", storage_url="storage://y", kind="image")
    _old_row(conn, "p1", "p.jpg", "publishing", job_id="j2", job_state="stopped")
    conn.commit()
    conn.close()

    old = SqliteLedger(path)
    assert old.by_asset_id("a1").state == State.PUBLISHED  # type: ignore[union-attr]
    assert old.by_asset_id("a1").cleanup_pending == 0  # type: ignore[union-attr]
    assert old.by_asset_id("f1").failed_in == "report", "a failed DeepVA job: retry means a new job"  # type: ignore[union-attr]
    assert old.by_asset_id("f2").failed_in == "submit", "uploaded, no job: the job creation failed"  # type: ignore[union-attr]
    assert old.by_asset_id("p1").state == State.JOB_FAILED, "a failed job's row goes to its own state"  # type: ignore[union-attr]
    assert old.folder_first_seen("/w") == 1.0, "a folder with rows was watched before: its existing rule never runs"
    assert old.observe("/w", "b.jpg", 1, 1, now=2.0).outcome == "new"
    assert old.integrity_ok()
    tables = {row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "migrations" not in tables and "history" in tables
    SqliteLedger(path)  # opening again applies nothing twice


def test_a_ledger_written_by_a_newer_release_is_refused_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    SqliteLedger(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                 "VALUES ('deepva-watch-ledger', 'from-the-future', '2030-01-01')")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match="written by a newer deepva-watch .*from-the-future"):
        SqliteLedger(path)
    with pytest.raises(LedgerError, match="newer"):
        SqliteLedger(path, readonly=True)


def test_a_file_that_is_no_ledger_is_refused_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="cannot be used"):
        SqliteLedger(path)


def test_the_ledger_survives_reopening_and_reads_while_open_read_only(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    SqliteLedger(path).observe("/w", "a.jpg", 1, 1, now=1.0)
    reopened = SqliteLedger(path)
    assert reopened.count_by_state() == {"settling": 1}
    assert reopened.integrity_ok()
    assert SqliteLedger(path, readonly=True).count_by_state() == {"settling": 1}
