"""What only the PostgreSQL ledger has: nodes that start and discover at once, versioned schema steps, a URL that may
hold a password, a server that can stop answering, and endings numbered in commit order."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from deepva_watch.ledger import LedgerError, Move
from deepva_watch.states import State
from tests.conftest import IN_CI, free_port
from tests.ledger.conftest import PASSWORD, PASSWORD_ROLE, PostgresServer

try:
    import psycopg

    from deepva_watch.ledger.postgres import FINISHING_LOCK, PostgresLedger
except ImportError as missing:
    if IN_CI:
        raise
    pytest.skip(f"the PostgreSQL ledger needs psycopg ({missing}); ./scripts/setup-env installs it",
                allow_module_level=True)

S = State


def _at_once(count: int, work: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """``work(index)`` in ``count`` threads released together: what they returned, and what they raised."""
    barrier = threading.Barrier(count)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results.append(work(index))
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors


def test_nodes_starting_at_once_on_a_fresh_database_apply_each_step_once(postgres_url: str) -> None:
    ledgers, errors = _at_once(4, lambda _: PostgresLedger(postgres_url))
    try:
        assert errors == []
        with psycopg.connect(postgres_url) as conn:
            steps = sorted(row[0] for row in conn.execute("SELECT name FROM migrations"))
            columns = {row[0] for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'assets'")}
        assert steps == sorted(["ledger", "nodes"]), "each step once"
        assert {"held_by", "location", "media_seconds"} <= columns
        ledgers[0].observe("/w", "a.jpg", 1, 1, now=1.0)
        assert ledgers[3].count_by_state() == {"settling": 1}
    finally:
        for ledger in ledgers:
            ledger.close()


def test_a_database_written_by_a_newer_release_is_refused_with_one_line(postgres_url: str) -> None:
    PostgresLedger(postgres_url).close()
    with psycopg.connect(postgres_url) as conn:
        conn.execute("INSERT INTO migrations (name, applied_at) VALUES ('from-the-future', 0)")
    with pytest.raises(LedgerError, match="written by a newer deepva-watch .*from-the-future"):
        PostgresLedger(postgres_url)
    with pytest.raises(LedgerError, match="newer"):
        PostgresLedger(postgres_url, readonly=True)


def test_a_read_only_handle_reads_and_refuses_to_write(postgres_url: str) -> None:
    with pytest.raises(LedgerError, match="holds no ledger"):
        PostgresLedger(postgres_url, readonly=True)
    writer = PostgresLedger(postgres_url)
    writer.observe("/w", "a.jpg", 1, 1, now=1.0)
    reader = PostgresLedger(postgres_url, readonly=True)
    try:
        assert reader.count_by_state() == {"settling": 1}
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader.observe("/w", "b.jpg", 1, 1, now=2.0)
        reader.set_folder_priorities({"/w": 3})  # remembered for this handle, nothing written
        assert writer.versions("/w", "a.jpg")[0].priority == 0
    finally:
        reader.close()
        writer.close()


def test_a_wrong_password_is_refused_without_the_password_in_the_message(
    postgres_server: PostgresServer, postgres_database: str,
) -> None:
    wrong = "wrong-Pa55word-e81c"
    with pytest.raises(LedgerError) as refused:
        PostgresLedger(postgres_server.url(postgres_database, PASSWORD_ROLE, wrong))
    message = str(refused.value)
    assert "password authentication failed" in message
    assert f"postgresql://127.0.0.1:{postgres_server.port}/{postgres_database}" in message
    assert wrong not in message and wrong not in repr(refused.value)

    ledger = PostgresLedger(postgres_server.url(postgres_database, PASSWORD_ROLE, PASSWORD))
    try:
        assert ledger.problem() is None
        assert PASSWORD not in repr(ledger) and PASSWORD not in ledger.where
    finally:
        ledger.close()


@pytest.mark.parametrize("url", [
    "postgresql://dvw:closed-Pa55word-41aa@127.0.0.1:{port}/ledger",
    "host=127.0.0.1 port={port} password=closed-Pa55word-41aa dbname",  # not even a valid conninfo
])
def test_an_unreachable_or_unreadable_url_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(LedgerError) as refused:
        PostgresLedger(url.format(port=free_port()))
    assert "closed-Pa55word-41aa" not in str(refused.value)
    assert "127.0.0.1" in str(refused.value) or "cannot be read" in str(refused.value)


def test_a_database_that_stops_answering_is_an_outage_not_a_halt(postgres_server: PostgresServer,
                                                                  postgres_database: str) -> None:
    ledger = PostgresLedger(postgres_server.url(postgres_database, PASSWORD_ROLE, PASSWORD))
    try:
        ledger.observe("/w", "a.jpg", 1, 1, now=1.0)
        assert ledger.outage() is None
        with postgres_server.admin() as admin:
            admin.execute(f"DROP DATABASE {postgres_database} WITH (FORCE)")
        assert ledger.problem() is None, "work waits for the database; nothing halts for good"
        problem = ledger.outage()
        assert problem is not None and "cannot be reached" in problem and postgres_database in problem
        assert PASSWORD not in problem
    finally:
        ledger.close()


def test_nodes_seeing_the_same_new_file_at_once_record_it_once(postgres_url: str) -> None:
    ledgers = [PostgresLedger(postgres_url) for _ in range(4)]
    try:
        outcomes, errors = _at_once(4, lambda index: ledgers[index].observe("/w", "a.mxf", 10, 1, now=1.0).outcome)
        assert errors == [] and sorted(outcomes) == ["known", "known", "known", "new"]
        found, errors = _at_once(4, lambda index: ledgers[index].observe_new_paths("/w", [("b.mxf", 1, 1)], 2.0)[0])
        assert errors == [] and sum(len(inserted) for inserted in found) == 1
        assert len(ledgers[0].versions("/w", "a.mxf")) == len(ledgers[0].versions("/w", "b.mxf")) == 1
    finally:
        for ledger in ledgers:
            ledger.close()


def test_a_file_ending_waits_for_an_earlier_ending_to_commit(postgres_url: str) -> None:
    """finished_since reads by id: an ending numbered while an earlier one is uncommitted could be passed over, so
    a transaction recording one holds the finishing lock until it commits. Other steps do not queue on it."""
    ledger = PostgresLedger(postgres_url)
    try:
        for name in ("a.jpg", "b.jpg"):
            ledger.observe("/w", name, 1, 1, now=1.0)
        a, b = (ledger.versions("/w", name)[0] for name in ("a.jpg", "b.jpg"))
        with psycopg.connect(postgres_url) as other:  # another node, its ending not yet committed
            other.execute("SELECT pg_advisory_xact_lock(%s, %s)", FINISHING_LOCK)
            ledger.transition(b, S.SETTLING, S.SETTLED, now=2.0)  # not an ending: does not wait
            ending = threading.Thread(target=ledger.transition_many, args=([Move(a, S.SETTLING, S.FAILED)], 3.0))
            ending.start()
            ending.join(timeout=0.5)
            assert ending.is_alive(), "the ending went ahead of an uncommitted one"
            assert ledger.finished_since(0, 10) == []
        ending.join(timeout=10)
        assert [row.relpath for _, _, row in ledger.finished_since(0, 10)] == ["a.jpg"]
    finally:
        ledger.close()
