"""What any ledger must do: versions, claims only one worker wins, quotas that hold for workers racing, transitions
that land only from the expected state, recovery after a crash, and a history of every step."""

from __future__ import annotations

import threading

import pytest

from deepva_watch.ledger import Ledger, Move, Quota, TransitionLost
from deepva_watch.states import State
from tests.ledger.conftest import MakeLedger

S = State


def _put(ledger: Ledger, relpath: str, state: State, *, size: int = 1, now: float = 1.0, **changes: object):
    """A row for ``relpath`` in ``state`` (as the flow would have left it)."""
    ledger.observe("/w", relpath, size, 1, now=now)
    (row,) = ledger.versions("/w", relpath)
    return ledger.transition(row, S.SETTLING, state, now, **changes) if state != S.SETTLING else row


def test_same_version_seen_again_is_known_and_a_changed_file_is_a_new_version(ledger: Ledger) -> None:
    first = ledger.observe("/w", "a.mxf", 10, 100, now=1.0)
    assert first.outcome == "new"
    assert ledger.observe("/w", "a.mxf", 10, 100, now=2.0).outcome == "known"
    row = ledger.versions("/w", "a.mxf")[0]
    ledger.transition(row, S.SETTLING, S.PUBLISHED, now=3.0)
    assert ledger.observe("/w", "a.mxf", 10, 100, now=4.0).outcome == "known"
    second = ledger.observe("/w", "a.mxf", 20, 200, now=5.0)
    assert second.outcome == "new" and second.asset_id != first.asset_id
    assert [v.state for v in ledger.versions("/w", "a.mxf")] == [S.PUBLISHED, S.SETTLING]


def test_a_settling_file_that_grows_restarts_its_quiet_period(ledger: Ledger) -> None:
    ledger.observe("/w", "a.mxf", 10, 100, now=1.0)
    assert ledger.observe("/w", "a.mxf", 15, 150, now=2.0).outcome == "changed"
    (row,) = ledger.versions("/w", "a.mxf")
    assert (row.size, row.mtime_ns, row.stable_since) == (15, 150, 2.0)


def test_a_new_version_supersedes_an_older_one_not_yet_submitted(ledger: Ledger) -> None:
    _put(ledger, "a.mxf", S.ACCEPTED, size=10)
    ledger.observe("/w", "a.mxf", 20, 200, now=3.0)
    assert [v.state for v in ledger.versions("/w", "a.mxf")] == [S.SUPERSEDED, S.SETTLING]


def test_gone_only_touches_versions_not_yet_handed_to_deepva(ledger: Ledger) -> None:
    ledger.observe("/w", "a.jpg", 1, 1, now=1.0)
    _put(ledger, "b.jpg", S.SUBMITTED, job_id="j")
    assert ledger.mark_gone_many("/w", ["a.jpg", "b.jpg"], now=3.0) == [("a.jpg", ledger.versions("/w", "a.jpg")[0].asset_id)]
    assert ledger.versions("/w", "a.jpg")[0].state == S.GONE
    assert ledger.versions("/w", "b.jpg")[0].state == S.SUBMITTED
    # the same version coming back (a remount) is revived, not duplicated
    assert ledger.observe("/w", "a.jpg", 1, 1, now=4.0).outcome == "revived"
    assert [v.state for v in ledger.versions("/w", "a.jpg")] == [S.SETTLING]


def test_newest_versions_come_a_page_at_a_time_in_path_order(ledger: Ledger) -> None:
    """What a reconcile of a million files reads: each path once, with its newest version, after a given path."""
    names = ["b/x.jpg", "a.jpg", "a/z.jpg", "a/b/y.jpg", "a-b/c.jpg", "\u00e9t\u00e9.jpg", "z.jpg"]
    for name in names:
        ledger.observe("/w", name, 1, 1, now=1.0)
    ledger.observe("/other", "a0.jpg", 1, 1, now=1.0)
    _put(ledger, "a/z.jpg", S.PUBLISHED)
    ledger.observe("/w", "a/z.jpg", 2, 2, now=2.0)  # a newer version of a published file
    ledger.mark_gone_many("/w", ["z.jpg"], now=3.0)
    pages, after = [], ""
    while page := ledger.latest_versions_page("/w", after, 3):
        pages.append(page)
        after = page[-1][0]
    assert [len(page) for page in pages] == [3, 3, 1]
    rows = [row for page in pages for row in page]
    assert [row[0] for row in rows] == sorted(names), "code-point order, each path once"
    assert dict((row[0], row[1:]) for row in rows)["a/z.jpg"] == (2, 2, S.SETTLING)
    assert dict((row[0], row[1:]) for row in rows)["z.jpg"] == (1, 1, S.GONE)
    assert ledger.latest_versions_page("/w", "b/", 10) == [("b/x.jpg", 1, 1, S.SETTLING), ("z.jpg", 1, 1, S.GONE),
                                                           ("\u00e9t\u00e9.jpg", 1, 1, S.SETTLING)]


def _claim_from_threads(make_ledger: MakeLedger, claim, workers: int = 4) -> list[int]:
    """Row ids claimed by ``workers`` threads, each with its own handle, each claiming until it comes back empty."""
    claimed: list[int] = []
    lock = threading.Lock()
    handles = [make_ledger() for _ in range(workers)]

    def worker(mine: Ledger) -> None:
        while batch := claim(mine):
            with lock:
                claimed.extend(asset.id for asset in batch)

    threads = [threading.Thread(target=worker, args=(handle,)) for handle in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return claimed


def test_claims_are_exclusive_across_workers(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.observe_new_paths("/w", [(f"f{index:03d}", 1, 1) for index in range(200)], now=0.0)
    ledger.transition_many([Move(row, S.SETTLING, S.ACCEPTED) for row in ledger.due((S.SETTLING,), 1.0, 200)], 0.0)
    claimed = _claim_from_threads(
        make_ledger, lambda mine: mine.claim((S.ACCEPTED,), S.UPLOADING, 1.0, 3, stage="upload"))
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 200


def test_a_quota_holds_for_workers_claiming_at_once_and_the_oldest_go_first(make_ledger: MakeLedger) -> None:
    """max_active_jobs: four workers racing for 200 rows under a quota of 5 never hold more than 5 between them;
    finishing one frees exactly one more claim."""
    ledger = make_ledger()
    ledger.observe_new_paths("/w", [(f"f{index:03d}", 1, 1) for index in range(200)], now=0.0)
    ledger.transition_many([Move(row, S.SETTLING, S.UPLOADED) for row in ledger.due((S.SETTLING,), 1.0, 200)], 0.0)
    quota = Quota((S.SUBMITTING, S.SUBMITTED), 5)
    claimed = _claim_from_threads(
        make_ledger, lambda mine: mine.claim((S.UPLOADED,), S.SUBMITTING, 1.0, 2, stage="submit", quota=quota))
    assert len(claimed) == len(set(claimed)) == 5
    assert sorted(claimed) == sorted(asset.id for asset in ledger.query())[:5]  # the oldest went first
    first = ledger.get(claimed[0])
    assert first is not None
    ledger.transition(first, S.SUBMITTING, S.COMPLETED, now=2.0)
    assert len(ledger.claim((S.UPLOADED,), S.SUBMITTING, 3.0, 5, stage="submit", quota=quota)) == 1
    assert ledger.claim((S.UPLOADED,), S.SUBMITTING, 3.0, 5, stage="submit", quota=quota) == []


def test_a_claim_by_bytes_takes_small_files_together_and_a_large_one_alone(ledger: Ledger) -> None:
    for name, size in (("a.jpg", 400_000), ("b.jpg", 400_000), ("c.jpg", 400_000), ("d.mxf", 5_000_000),
                       ("e.jpg", 100)):
        _put(ledger, name, S.ACCEPTED, size=size)

    def claim() -> list[str]:
        return [row.relpath for row in ledger.claim([S.ACCEPTED], S.UPLOADING, 2.0, 8, stage="upload",
                                                    max_bytes=1_000_000)]

    assert claim() == ["a.jpg", "b.jpg", "c.jpg"], "taken while the files before hold less than the budget"
    assert claim() == ["d.mxf"]
    assert claim() == ["e.jpg"]
    assert claim() == []


def test_higher_priority_folders_are_claimed_first(ledger: Ledger) -> None:
    ledger.set_folder_priorities({"/news": 5})
    _put(ledger, "old.jpg", S.ACCEPTED)
    ledger.observe("/news", "new.jpg", 1, 1, now=2.0)
    (news,) = ledger.versions("/news", "new.jpg")
    ledger.transition(news, S.SETTLING, S.ACCEPTED, 2.0)
    assert [row.relpath for row in ledger.claim([S.ACCEPTED], S.UPLOADING, 3.0, 2, stage="upload")] == [
        "new.jpg", "old.jpg"]


def test_transition_lands_only_from_the_expected_state(ledger: Ledger) -> None:
    row = _put(ledger, "a.jpg", S.SETTLING)
    ledger.transition(row, S.SETTLING, S.SETTLED, now=2.0)
    with pytest.raises(TransitionLost):
        ledger.transition(row, S.SETTLING, S.SETTLED, now=3.0)
    with pytest.raises(ValueError):
        ledger.transition(row, S.SETTLED, S.ACCEPTED, now=3.0, asset_id="forged")


def test_a_batch_of_transitions_lands_together_and_a_row_that_moved_on_is_lost_alone(ledger: Ledger) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        ledger.observe("/w", name, 1, 1, now=1.0)
    a, b, c = (ledger.versions("/w", name)[0] for name in ("a.jpg", "b.jpg", "c.jpg"))
    ledger.transition(b, S.SETTLING, S.GONE, now=2.0)  # b moved on meanwhile
    moves = [Move(row, S.SETTLING, S.SETTLED, {"attempts": 0}) for row in (a, b, c)]
    landed = ledger.transition_many(moves, now=3.0)
    assert [row.state if row else None for row in landed] == [S.SETTLED, None, S.SETTLED]
    assert [ledger.versions("/w", name)[0].state for name in ("a.jpg", "b.jpg", "c.jpg")] == [
        S.SETTLED, S.GONE, S.SETTLED]
    with pytest.raises(ValueError):
        ledger.transition_many([Move(a, S.SETTLED, S.ACCEPTED, {"asset_id": "x"})], now=4.0)
    assert ledger.versions("/w", "a.jpg")[0].state == S.SETTLED, "a refused batch changes nothing"


def test_recover_returns_working_rows_home_and_remembers_a_possible_job(ledger: Ledger) -> None:
    for name, working in (("u", S.UPLOADING), ("s", S.SUBMITTING), ("p", S.PUBLISHING), ("r", S.REPORTING)):
        _put(ledger, name, working)
    assert ledger.recover(now=5.0) == {"uploading": 1, "submitting": 1, "publishing": 1, "reporting": 1}
    after = {name: ledger.versions("/w", name)[0] for name in "uspr"}
    assert after["u"].state == S.ACCEPTED and after["u"].upload_attempted == 1
    assert after["s"].state == S.UPLOADED and after["s"].submit_attempted == 1
    assert after["p"].state == S.COMPLETED
    assert after["r"].state == S.JOB_FAILED
    assert all(row.next_attempt_at == 5.0 for row in after.values())


def test_every_step_is_in_the_history_and_waits_are_not(ledger: Ledger) -> None:
    row = _put(ledger, "a.jpg", S.SETTLING)
    row = ledger.transition(row, S.SETTLING, S.SETTLING, 2.0, next_attempt_at=3.0)  # a wait
    row = ledger.transition(row, S.SETTLING, S.SETTLED, 3.0, stage="settle")
    row = ledger.transition(row, S.SETTLED, S.SETTLED, 4.0, stage="sniff", last_error="cannot read", attempts=1)
    row = ledger.transition(row, S.SETTLED, S.ACCEPTED, 5.0, stage="sniff", last_error=None, attempts=0)
    (claimed,) = ledger.claim([S.ACCEPTED], S.UPLOADING, 6.0, 1, stage="upload")
    ledger.transition(claimed, S.UPLOADING, S.FAILED, 7.0, stage="upload", last_error="bad", failed_in="upload")
    steps = [(entry.at, entry.from_state, entry.to_state, entry.stage, entry.error)
             for entry in ledger.history([row.asset_id])]
    assert steps == [
        (3.0, "settling", "settled", "settle", None),
        (4.0, "settled", "settled", "sniff", "cannot read"),
        (5.0, "settled", "accepted", "sniff", None),
        (6.0, "accepted", "uploading", "upload", None),
        (7.0, "uploading", "failed", "upload", "bad"),
    ]
    assert ledger.by_asset_id(row.asset_id).failed_in == "upload"  # type: ignore[union-attr]


def test_clean_ups_are_due_by_their_time_and_done_once(ledger: Ledger) -> None:
    row = _put(ledger, "a.jpg", S.PUBLISHED, cleanup_pending=1, next_attempt_at=2.0)
    assert ledger.pending_clean_ups(1.0, 10) == []
    assert [asset.id for asset in ledger.pending_clean_ups(2.0, 10)] == [row.id]
    ledger.clean_up_later(row.id, 60.0)
    assert ledger.pending_clean_ups(59.0, 10) == []
    ledger.clean_up_done(row.id)
    assert ledger.pending_clean_ups(float("inf"), 10) == []


def test_a_setting_only_advances(ledger: Ledger) -> None:
    assert ledger.advance_setting("nonce", 5, 1.0)
    assert not ledger.advance_setting("nonce", 5, 2.0)
    assert not ledger.advance_setting("nonce", 4, 2.0)
    assert ledger.advance_setting("nonce", 6, 2.0) and ledger.get_setting("nonce") == "6"


def test_forget_refuses_while_a_worker_holds_a_version(ledger: Ledger) -> None:
    _put(ledger, "a.jpg", S.UPLOADING)
    assert ledger.forget_idle("/w", "a.jpg") == 0
    (row,) = ledger.versions("/w", "a.jpg")
    ledger.transition(row, S.UPLOADING, S.UPLOADED, 2.0)
    assert ledger.forget_idle("/w", "a.jpg") == 1 and ledger.versions("/w", "a.jpg") == []


def test_values_come_back_as_they_went_in(ledger: Ledger) -> None:
    """Sizes, times and inodes past 32 bits, a flag given as a bool, an unknown path seen twice in one batch."""
    big = 2**62
    inserted, leftover = ledger.observe_new_paths("/w", [("a", 1, 1), ("b", 2, 2), ("a", big, big)], 1.0,
                                                  skipped={"b"})
    assert [path for path, _ in inserted] == ["a"] and leftover == []
    assert [v.state for v in ledger.versions("/w", "b")] == [S.SKIPPED]
    (row,) = ledger.versions("/w", "a")
    row = ledger.transition(row, S.SETTLING, S.SETTLED, 2.0, error_retryable=True, device=big, inode=big,
                            media_seconds=12.5)
    assert (row.size, row.mtime_ns, row.device, row.inode) == (big, big, big, big)
    assert row.error_retryable == 1 and row.media_seconds == 12.5 and row.next_attempt_at == 1.0
    assert ledger.advance_setting("nonce", 10**20, 3.0) and ledger.get_setting("nonce") == str(10**20)


def test_empty_batches_change_nothing(ledger: Ledger) -> None:
    assert ledger.transition_many([], 1.0) == []
    assert ledger.observe_new_paths("/w", [], 1.0) == ([], [])
    assert ledger.mark_gone_many("/w", [], 1.0) == []
    assert ledger.retire([], 1.0) == 0
    assert ledger.history([]) == []
    assert ledger.claim([S.ACCEPTED], S.UPLOADING, 1.0, 5, stage="upload", quota=Quota((S.SUBMITTING,), 0)) == []
    assert ledger.count_by_state() == {} and ledger.next_due_at([S.ACCEPTED]) is None


def test_a_node_joins_beats_and_leaves_and_a_second_join_under_its_name_takes_it_back(ledger: Ledger) -> None:
    ledger.join("ingest-1", "host-a", 4242, now=10.0, lease_seconds=30.0)
    ledger.heartbeat(now=20.0)
    (node,) = ledger.nodes()
    assert (node.name, node.host, node.pid, node.started_at, node.last_beat) == ("ingest-1", "host-a", 4242, 10.0, 20.0)
    assert node.alive(50.0) and not node.alive(50.1)
    assert ledger.take_over(now=60.0) == {}, "no rows held by anyone else"
    ledger.leave(now=70.0)
    (node,) = ledger.nodes()
    assert node.left_at == 70.0 and not node.alive(70.0)
    ledger.join("ingest-1", "host-a", 4243, now=80.0, lease_seconds=30.0)  # the same node, restarted
    (node,) = ledger.nodes()
    assert node.pid == 4243 and node.left_at is None and node.alive(80.0)
