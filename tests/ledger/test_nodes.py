"""Several nodes on one PostgreSQL ledger: each row is worked by the node that claimed it; a node that stops beating
is taken over; a node taken for dead cannot land a step another node took over."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

from deepva_watch.ledger import Ledger, LedgerError, Quota, TransitionLost
from deepva_watch.ledger.postgres import PostgresLedger
from deepva_watch.states import State
from tests.ledger.conftest import MakeLedger

S = State
LEASE = 30.0


@pytest.fixture
def make_ledger(postgres_url: str) -> Iterator[MakeLedger]:
    """Handles on one PostgreSQL ledger, each another node (SQLite keeps one daemon per ledger)."""
    opened: list[Ledger] = []

    def make() -> Ledger:
        opened.append(PostgresLedger(postgres_url))
        return opened[-1]

    yield make
    for ledger in opened:
        ledger.close()


@pytest.fixture
def two_nodes(make_ledger: MakeLedger) -> tuple[Ledger, Ledger]:
    first, second = make_ledger(), make_ledger()
    for ledger, name in ((first, "a"), (second, "b")):
        ledger.join(name, f"host-{name}", ord(name), now=0.0, lease_seconds=LEASE)
        ledger.set_folder_priorities({"/share": 0})
    return first, second


def _rows(ledger: Ledger, count: int, state: State, **changes: object) -> None:
    for index in range(count):
        ledger.observe("/share", f"{index}.jpg", 1, 1, now=0.0)
        (row,) = ledger.versions("/share", f"{index}.jpg")
        ledger.transition(row, S.SETTLING, state, 0.0, **changes)


def test_a_dead_nodes_rows_are_taken_over_after_its_lease_and_not_before(two_nodes: tuple[Ledger, Ledger]) -> None:
    a, b = two_nodes
    _rows(a, 4, S.UPLOADED)
    claimed = a.claim((S.UPLOADED,), S.SUBMITTING, 1.0, 2, stage="submit")
    assert len(claimed) == 2
    b.heartbeat(LEASE)
    assert b.take_over(LEASE) == {}, "a's lease still runs"
    b.heartbeat(LEASE + 5)
    assert b.take_over(LEASE + 5) == {"submitting": 2}
    for row in claimed:
        now = a.get(row.id)
        assert now is not None and now.state == S.UPLOADED and now.submit_attempted == 1, \
            "home again, marked: the next try looks for the job by its tag before creating one"
    assert {row.id for row in b.claim((S.UPLOADED,), S.SUBMITTING, LEASE + 6, 10, stage="submit")} == \
        {row.id for row in claimed} | {row.id for row in b.query(states=[S.SUBMITTING]) if row.id not in claimed}


def test_a_node_taken_for_dead_cannot_land_a_step_on_a_row_taken_over(two_nodes: tuple[Ledger, Ledger]) -> None:
    a, b = two_nodes
    _rows(a, 1, S.ACCEPTED)
    (row,) = a.claim((S.ACCEPTED,), S.UPLOADING, 1.0, 1, stage="upload")
    b.heartbeat(100.0)
    b.take_over(100.0)
    (again,) = b.claim((S.ACCEPTED,), S.UPLOADING, 101.0, 1, stage="upload")
    assert again.id == row.id
    with pytest.raises(TransitionLost):
        a.transition(row, S.UPLOADING, S.UPLOADED, 102.0, storage_id="stale")
    assert b.transition(again, S.UPLOADING, S.UPLOADED, 102.0, storage_id="fresh").storage_id == "fresh"


def test_one_node_at_a_time_tracks_jobs_and_another_leads_once_its_session_ends(
        two_nodes: tuple[Ledger, Ledger], make_ledger: MakeLedger) -> None:
    """One list request then answers for the jobs of every node; the lock dies with the leader's session."""
    a, b = two_nodes
    assert a.leads("track") and not b.leads("track")
    assert a.leads("track"), "a leader stays one"
    a.close()
    successor = make_ledger()
    successor.join("c", "host-c", 3, now=1.0, lease_seconds=LEASE)
    assert successor.leads("track")
    assert make_ledger().leads("track"), "a handle that is no node (a command) is not held back"


def test_a_node_that_left_is_taken_over_at_once(two_nodes: tuple[Ledger, Ledger]) -> None:
    a, b = two_nodes
    _rows(a, 1, S.COMPLETED)
    a.claim((S.COMPLETED,), S.PUBLISHING, 1.0, 1, stage="publish")
    a.leave(2.0)
    assert b.take_over(2.0) == {"publishing": 1}


def test_a_restarted_node_takes_its_own_rows_back_at_once(make_ledger: MakeLedger) -> None:
    """Killed and started again on this host within its lease: the old process is gone, so the name is free."""
    gone_pid = _a_finished_pid()
    before = make_ledger()
    before.join("a", socket.gethostname(), gone_pid, now=0.0, lease_seconds=LEASE)
    before.set_folder_priorities({"/share": 0})
    _rows(before, 2, S.ACCEPTED)
    before.claim((S.ACCEPTED,), S.UPLOADING, 1.0, 2, stage="upload")
    restarted = make_ledger()
    restarted.join("a", socket.gethostname(), os.getpid(), now=2.0, lease_seconds=LEASE)
    assert restarted.recover(2.0) == {"uploading": 2}


def _a_finished_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_second_live_process_under_a_nodes_name_is_refused(two_nodes: tuple[Ledger, Ledger],
                                                             make_ledger: MakeLedger) -> None:
    here = make_ledger()
    here.join("c", socket.gethostname(), os.getpid(), now=0.0, lease_seconds=LEASE)
    with pytest.raises(LedgerError, match="as node 'c'"):
        make_ledger().join("c", socket.gethostname(), os.getppid(), now=1.0, lease_seconds=LEASE)
    with pytest.raises(LedgerError, match="as node 'b'"):
        make_ledger().join("b", "host-x", 9, now=1.0, lease_seconds=LEASE)  # b's lease still runs
    make_ledger().join("b", "host-x", 9, now=LEASE + 1, lease_seconds=LEASE)  # not any more: b died


def test_a_quota_holds_across_nodes(two_nodes: tuple[Ledger, Ledger]) -> None:
    a, b = two_nodes
    _rows(a, 10, S.UPLOADED)
    quota = Quota((S.SUBMITTING, S.SUBMITTED), 5)
    taken = a.claim((S.UPLOADED,), S.SUBMITTING, 1.0, 3, stage="submit", quota=quota)
    taken += b.claim((S.UPLOADED,), S.SUBMITTING, 1.0, 10, stage="submit", quota=quota)
    assert len(taken) == 5


def test_a_node_works_only_on_the_folders_it_watches(two_nodes: tuple[Ledger, Ledger]) -> None:
    """During a rollout one node may watch a folder the other does not know yet: that one leaves its rows alone."""
    a, b = two_nodes
    a.set_folder_priorities({"/share": 0, "/new": 0})
    a.observe("/new", "x.jpg", 1, 1, now=0.0)
    (row,) = a.versions("/new", "x.jpg")
    a.transition(row, S.SETTLING, S.ACCEPTED, 0.0)
    assert b.claim((S.ACCEPTED,), S.UPLOADING, 1.0, 10, stage="upload") == []
    assert b.due((S.ACCEPTED,), 1.0, 10) == []
    assert [claimed.id for claimed in a.claim((S.ACCEPTED,), S.UPLOADING, 1.0, 10, stage="upload")] == [row.id]
