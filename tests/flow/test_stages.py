"""Each stage under the one runner: what it decides, and what the runner commits for it."""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from deepva_watch.deepva import BadRequest, NotAuthenticated, RateLimited, ServerError, TransportError
from deepva_watch.deepva.models import Job, JobPage
from deepva_watch.flow import folder_key
from deepva_watch.flow.policy import MAX_ATTEMPTS, REFUSED_KEY_RETRY_SECONDS
from deepva_watch.ledger import SqliteLedger
from deepva_watch.stages import track
from deepva_watch.stages.clean_up import RETRY_SECONDS, CleanUp
from deepva_watch.states import State
from tests.conftest import FIXTURES
from tests.flow.conftest import FakeClient, Flow, make_flow, one_folder

S = State


def test_a_file_waits_out_its_quiet_period_then_flows_to_submitted(flow: Flow) -> None:
    flow.drop("a.jpg", fixture="sample.jpg")
    flow.run("settle")
    assert flow.only().state == S.SETTLING, "not settled before settle_seconds"
    flow.clock.advance(10)
    flow.run("settle", "sniff", "upload", "submit")
    row = flow.only()
    assert row.state == S.SUBMITTED and row.mime == "image/jpeg" and (row.content_hash or "").startswith("blake2b")
    assert flow.client.calls == ["upload", "create_job"]
    assert row.next_attempt_at == flow.clock.now() + track.FIRST_LOOK_SECONDS, "nothing known yet: a look soon"

    flow.run("track")
    assert flow.client.calls == ["upload", "create_job"], "a job is not looked at before it is due"
    flow.clock.advance(1)
    flow.client.jobs = {key: replace(job, state="processing", progress=0.25, duration=2.0)
                        for key, job in flow.client.jobs.items()}
    flow.run("track")
    row = flow.only()
    assert row.state == S.SUBMITTED and row.job_state == "processing"
    assert row.next_attempt_at == flow.clock.now() + 6.0 + track.MARGIN_SECONDS, "a quarter done in 2 s: 6 s to go"
    flow.client.finish()
    flow.clock.advance(6.1)
    flow.run("track")
    row = flow.only()
    assert row.state == S.COMPLETED and Job.loads(row.job_snapshot or "").state == "completed"


def test_a_new_job_is_first_looked_at_when_jobs_of_its_kind_took_lately(flow: Flow) -> None:
    flow.accept("a.png", "b.png")
    flow.run("upload", "upload", "submit")
    flow.client.jobs = {key: replace(job, state="completed", progress=1.0, duration=3.0)
                        for key, job in flow.client.jobs.items()}
    flow.clock.advance(track.FIRST_LOOK_SECONDS)
    flow.run("track")
    assert {row.job_seconds for row in flow.services.ledger.query()} == {3.0}, "DeepVA's own time is kept"
    flow.accept("c.png")
    flow.run("upload", "submit")
    (new,) = flow.services.ledger.query(states=[S.SUBMITTED])
    assert new.next_attempt_at == flow.clock.now() + 3.0 + track.MARGIN_SECONDS


def test_jobs_due_close_together_are_looked_at_together_with_one_request(tmp_path: Path) -> None:
    flow = one_folder(tmp_path, settle_seconds=0)
    for name in ("a.png", "b.png", "c.png"):
        flow.accept(name)
        flow.run("upload", "submit")
        flow.clock.advance(0.05)  # created 50 ms apart: due 50 ms apart
    flow.client.finish()
    before = len(flow.client.calls)
    flow.clock.advance(track.FIRST_LOOK_SECONDS - 0.1)  # the first is due, the others soon after
    flow.run("track")
    assert len(flow.client.calls) == before, "it waits for the jobs due right after the first"
    flow.clock.advance(0.05)
    flow.run("track")
    assert flow.client.calls[before:] == ["list_jobs"], "one request for all three"
    assert flow.services.ledger.count_by_state() == {S.COMPLETED: 3}


def test_a_growing_file_is_not_taken_until_it_stops_changing(flow: Flow) -> None:
    path = flow.watch / "growing.mxf"
    path.write_bytes(b"x" * 10)
    flow.drop()
    for size in (20, 30, 40):
        flow.clock.advance(6)
        path.write_bytes(b"x" * size)
        flow.run("settle")
        assert flow.only().state == S.SETTLING
    flow.clock.advance(10)
    flow.run("settle")
    row = flow.only()
    assert row.state == S.SETTLED and row.size == 40


def test_lost_create_response_is_reconciled_by_tag_not_by_a_second_job(flow: Flow) -> None:
    client = flow.client
    flow.accept("a.png")
    flow.run("upload")
    real_create = client.create_job

    def create_then_lose_answer(sources, modules, *, tag, webhook=None):  # type: ignore[no-untyped-def]
        real_create(sources, modules, tag=tag)
        raise TransportError("POST", "/jobs/", reason="read timed out", maybe_applied=True)

    client.create_job = create_then_lose_answer  # type: ignore[method-assign]
    flow.run("submit")
    row = flow.only()
    assert row.state == S.UPLOADED and row.submit_attempted == 1 and len(client.jobs) == 1
    client.create_job = real_create  # type: ignore[method-assign]
    flow.clock.advance(3600)
    flow.run("submit")
    row = flow.only()
    assert row.state == S.SUBMITTED and row.job_id == "job-1"
    assert len(client.jobs) == 1 and client.calls[-1] == "find_jobs_by_tag"


def test_transient_errors_back_off_then_park_as_failed_with_the_stage(flow: Flow) -> None:
    flow.accept("a.png")
    flow.client.errors["upload"] = [ServerError("POST", "/storage/", status=503, excerpt="down")] * (MAX_ATTEMPTS + 1)
    delays = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        flow.run("upload")
        row = flow.only()
        if attempt < MAX_ATTEMPTS:
            assert row.state == S.ACCEPTED and row.attempts == attempt and "503" in (row.last_error or "")
            delays.append(row.next_attempt_at - flow.clock.now())
            flow.clock.advance(delays[-1])
    assert delays[-1] > delays[0], "backoff grows"
    row = flow.only()
    assert row.state == S.FAILED and row.error_retryable == 1 and row.failed_in == "upload"


def test_refused_key_and_bad_request_are_treated_differently(flow: Flow) -> None:
    flow.drop("b.jpg", fixture="sample.jpg")
    flow.accept("a.png")
    flow.client.errors["upload"] = [NotAuthenticated("POST", "/storage/", status=401, excerpt="")]
    flow.run("upload")
    refused = next(a for a in flow.services.ledger.query() if a.attempts == 0 and a.state == S.ACCEPTED and a.last_error)
    assert "refused the API key" in (refused.last_error or "")
    assert refused.next_attempt_at == flow.clock.now() + REFUSED_KEY_RETRY_SECONDS
    flow.client.errors["create_job"] = [BadRequest("POST", "/jobs/", status=400, excerpt="bad modules")]
    flow.run("upload", "submit")
    failed = [a for a in flow.services.ledger.query() if a.state == S.FAILED]
    assert len(failed) == 1 and failed[0].error_retryable == 0 and "400" in (failed[0].last_error or "")
    assert failed[0].failed_in == "submit"


def test_a_key_refused_mid_batch_hands_the_rest_of_the_batch_back_untouched(flow: Flow) -> None:
    """Job creation claims several rows at once; once DeepVA refuses the key (the daemon then closes the API gate),
    the rest of the batch must not each meet the same 401."""
    flow.accept(*(f"{index}.png" for index in range(5)))
    for _ in range(5):
        flow.run("upload")
    real_create = flow.client.create_job

    def refused(*args, **kwargs):  # type: ignore[no-untyped-def]
        flow.services.gate.close("DeepVA refused the API key (HTTP 401)")  # what the daemon's response hook does
        raise NotAuthenticated("POST", "/jobs/", status=401, excerpt="")

    flow.client.create_job = refused  # type: ignore[method-assign]
    assert flow.runners["submit"].run_once() == 5
    rows = flow.services.ledger.query()
    assert sorted(row.state for row in rows) == [S.UPLOADED] * 5
    assert all(row.attempts == 0 for row in rows)
    assert sum(1 for row in rows if row.last_error) == 1  # only the one that met the 401
    assert flow.runners["submit"].run_once() == 0  # the stage rests while the gate is closed

    flow.client.create_job = real_create  # type: ignore[method-assign]
    flow.services.gate.open()
    flow.clock.advance(REFUSED_KEY_RETRY_SECONDS)
    flow.run("submit")
    assert sorted(row.state for row in flow.services.ledger.query()) == [S.SUBMITTED] * 5


def test_a_failed_job_is_reported_with_its_errors_and_no_xmp(flow: Flow) -> None:
    flow.accept("a.jpg")
    flow.run("upload", "submit")
    flow.client.finish("failed", ("model not available",))
    flow.clock.advance(5)
    flow.run("track")
    row = flow.only()
    assert row.state == S.JOB_FAILED and row.errors == ["model not available"]
    flow.run("report")
    row = flow.only()
    assert row.state == S.FAILED and row.failed_in == "report" and "model not available" in (row.last_error or "")
    assert row.json_path and Path(row.json_path).exists() and row.xmp_path is None
    assert row.job_snapshot is None, "the job is kept only until its sidecar is written"


def test_deleted_before_submission_ends_gone_quietly(flow: Flow) -> None:
    flow.drop("a.jpg", fixture="sample.jpg")
    (flow.watch / "a.jpg").unlink()
    flow.clock.advance(10)
    flow.run("settle")
    assert flow.only().state == S.GONE
    assert flow.client.calls == []
    assert folder_key(flow.config.folders[0]) == flow.only().folder


def test_a_file_changed_while_deepva_worked_on_it_is_superseded_by_the_new_version(flow: Flow) -> None:
    flow.accept("a.png")
    flow.run("upload", "submit")
    flow.client.finish()
    flow.clock.advance(5)
    flow.run("track")
    shutil.copy(FIXTURES / "sample.jpg", flow.watch / "a.png")  # replaced by another picture
    flow.run("publish")
    old, new = flow.services.ledger.versions(folder_key(flow.config.folders[0]), "a.png")
    assert old.state == S.SUPERSEDED and "changed while DeepVA worked on it" in (old.last_error or "")
    assert new.state == S.SETTLING and new.size == (flow.watch / "a.png").stat().st_size
    assert not (flow.watch / "a.png.xmp").exists()


def test_max_active_jobs_holds_and_a_finished_job_frees_a_slot(tmp_path: Path) -> None:
    flow = one_folder(tmp_path, {"max_active_jobs": 3, "max_uploads": 1})
    flow.accept(*(f"{i}.png" for i in range(8)))
    for _ in range(10):
        flow.run("upload", "submit")
    counts = flow.services.ledger.count_by_state()
    assert counts[S.SUBMITTED] == 3, counts
    assert counts[S.UPLOADED] == 3 and counts[S.ACCEPTED] == 2, "uploads run ahead by one window, no more"
    flow.client.finish()
    flow.clock.advance(30)
    flow.run("track")
    assert flow.client.calls.count("list_jobs") == 1 and flow.client.calls.count("get_job") == 0, "one list polls all"
    for _ in range(10):
        flow.run("upload", "submit")
    assert flow.services.ledger.count_by_state()[S.SUBMITTED] == 3


def test_higher_priority_folder_goes_first_then_oldest(tmp_path: Path) -> None:
    low, high = tmp_path / "low", tmp_path / "high"
    low.mkdir()
    high.mkdir()
    flow = make_flow({"ledger": str(tmp_path / "l.sqlite3"), "folders": [
        {"path": str(low), "modules": {"m": {}}, "settle_seconds": 0},
        {"path": str(high), "modules": {"m": {}}, "settle_seconds": 0, "priority": 5},
    ]})
    flow.drop("a.png", "b.png")
    flow.drop("late.png", folder=1)
    flow.clock.advance(1)
    flow.run("settle", "sniff", "upload")
    order = [flow.client.storage[str(number)].name.split("_", 1)[1] for number in (1, 2, 3)]
    assert order == ["late.png", "a.png", "b.png"]


def test_a_failed_job_is_resubmitted_only_when_configured(tmp_path: Path) -> None:
    flow = one_folder(tmp_path, {"retry_failed_jobs": True})
    flow.accept("a.png")
    for _ in range(3):
        flow.run("upload", "submit")
        flow.client.finish("failed", ("GPU out of memory",))
        flow.clock.advance(30)
        flow.run("track")
    row = flow.only()
    assert row.state == S.JOB_FAILED and row.job_failures == 3 and len(flow.client.jobs) == 3


def test_cut_off_upload_leaves_no_duplicate_storage_object(flow: Flow) -> None:
    flow.accept("a.png")
    real_upload = flow.client.upload

    def upload_then_drop(path, **kwargs):  # type: ignore[no-untyped-def]
        real_upload(path, **kwargs)  # the server kept an object from the cut-off attempt
        raise TransportError("POST", "/storage/", reason="connection lost", maybe_applied=True)

    flow.client.upload = upload_then_drop  # type: ignore[method-assign]
    flow.run("upload")
    assert flow.only().upload_attempted == 1 and len(flow.client.storage) == 1
    flow.client.upload = real_upload  # type: ignore[method-assign]
    flow.clock.advance(3600)
    flow.run("upload")
    assert flow.only().state == S.UPLOADED
    assert len(flow.client.storage) == 1, "the leftover was deleted before the new upload"


def test_poll_budget_caps_requests_per_minute(tmp_path: Path) -> None:
    flow = one_folder(tmp_path, {"max_requests_per_minute": 6, "poll_interval_seconds": 1})
    flow.accept("a.png", "b.png")
    flow.run("upload", "upload", "submit", "submit")
    before = len(flow.client.calls)
    for _ in range(60):  # one simulated minute, looking every second
        flow.clock.advance(1)
        flow.run("track")
    polls = len(flow.client.calls) - before
    assert 6 <= polls <= 6 + 1 + 1, f"{polls} status requests in a minute with a ceiling of 6"


def test_the_tracker_pages_past_jobs_that_are_not_ours(tmp_path: Path) -> None:
    """Other clients' jobs fill the first page; ours are on the second."""
    client = FakeClient()
    for index in range(150):
        client.jobs[f"other-{index}"] = Job(id=f"other-{index}", tag="someone else", state="completed",
                                            progress=1.0, sources=(), modules={})
    flow = one_folder(tmp_path, {}, client)
    flow.accept("a.png", "b.png", "c.png")
    for _ in range(3):
        flow.run("upload", "submit")
    client.finish()
    flow.clock.advance(30)
    flow.run("track")
    assert flow.services.ledger.count_by_state() == {S.COMPLETED: 3}
    assert client.calls.count("list_jobs") == 2 and client.calls.count("get_job") == 0


def test_an_unknown_job_state_is_logged_and_polled_on(flow: Flow) -> None:
    flow.accept("a.png")
    flow.run("upload", "submit")
    flow.client.finish("queued_for_gpu")
    flow.client.jobs = {key: replace(job, progress=0.0) for key, job in flow.client.jobs.items()}
    with capture_logs() as logs:
        flow.clock.advance(30)
        flow.run("track")
    row = flow.only()
    assert row.state == S.SUBMITTED and row.job_state == "queued_for_gpu"
    assert any(entry["event"] == "job_state_unknown" and entry["state"] == "queued_for_gpu" for entry in logs)
    flow.client.finish()
    flow.clock.advance(120)
    flow.run("track")
    assert flow.only().state == S.COMPLETED


def test_a_vanished_job_sends_the_file_back_to_be_submitted_again(flow: Flow) -> None:
    flow.accept("a.png")
    flow.run("upload", "submit")
    flow.client.jobs.clear()
    flow.clock.advance(5)
    with capture_logs() as logs:
        flow.run("track")
    row = flow.only()
    assert row.state == S.UPLOADED and row.job_id is None and row.submit_attempted == 0
    assert any(entry["event"] == "job_vanished" for entry in logs)
    flow.run("submit")
    assert flow.only().state == S.SUBMITTED and flow.only().job_id == "job-1"


def _publish_one(tmp_path: Path, top: dict[str, object], client: FakeClient) -> Flow:
    flow = one_folder(tmp_path, top, client)
    flow.accept("a.png")
    flow.run("upload", "submit")
    client.finish()
    flow.clock.advance(30)
    flow.run("track", "publish")
    return flow


CLEAN_UP = {"delete_storage_after_completion": True, "delete_job_after_publish": True}


def test_published_results_come_from_the_job_the_tracker_kept(tmp_path: Path) -> None:
    flow = _publish_one(tmp_path, {}, FakeClient())
    row = flow.only()
    assert row.state == S.PUBLISHED and row.cleanup_pending == 0 and row.job_snapshot is None
    assert flow.client.calls == ["upload", "create_job", "get_job", "detailed_results"], \
        "the tracker's one look; publishing took the finished job from the ledger, not another request"
    assert row.xmp_path and Path(row.xmp_path).exists() and row.json_path and Path(row.json_path).exists()
    assert "delete_storage" not in flow.client.calls


def test_storage_and_job_are_deleted_only_once_the_row_says_published(tmp_path: Path) -> None:
    client = FakeClient()
    flow = _publish_one(tmp_path, CLEAN_UP, client)
    row = flow.only()
    assert row.state == S.PUBLISHED and row.cleanup_pending == 1 and len(client.storage) == 1
    seen: list[str] = []
    real_delete = client.delete_storage

    def delete_storage(storage_id: str) -> None:  # the row must say published first: a repeat needs the job
        seen.extend(SqliteLedger(tmp_path / "l.sqlite3", readonly=True).count_by_state())
        real_delete(storage_id)

    client.delete_storage = delete_storage  # type: ignore[method-assign]
    assert CleanUp(flow.services, __import__("threading").Event()).sweep() == 1
    assert seen == [S.PUBLISHED] and client.storage == {} and client.calls[-1] == "delete_job"
    assert flow.only().cleanup_pending == 0


def test_a_refused_clean_up_is_tried_again_a_minute_later(tmp_path: Path) -> None:
    client = FakeClient()
    client.errors["delete_storage"] = [ServerError("DELETE", "/storage/1/", status=503, excerpt="busy")]
    flow = _publish_one(tmp_path, CLEAN_UP, client)
    clean_up = CleanUp(flow.services, __import__("threading").Event())
    assert clean_up.sweep() == 0
    assert flow.only().cleanup_pending == 1 and len(client.storage) == 1
    assert clean_up.sweep() == 0 and client.calls.count("delete_storage") == 1, "not again at once"
    flow.clock.advance(RETRY_SECONDS)
    assert clean_up.sweep() == 1 and client.storage == {} and flow.only().cleanup_pending == 0
    before = len(client.calls)
    assert clean_up.sweep() == 0 and len(client.calls) == before, "a clean row is never swept again"


def test_a_worker_claims_no_more_than_its_share_of_the_window(tmp_path: Path) -> None:
    """Two upload workers and a window of three: one claim takes one file, so that the other worker gets work too."""
    narrow = one_folder(tmp_path, {"max_uploads": 2, "max_active_jobs": 3})
    narrow.accept("a.png", "b.png", "c.png")
    narrow.run("upload")
    assert narrow.client.calls.count("upload") == 1
    (tmp_path / "wide").mkdir()
    wide = one_folder(tmp_path / "wide", {"max_uploads": 2})
    wide.accept("a.png", "b.png", "c.png")
    wide.run("upload")
    assert wide.client.calls.count("upload") == 3, "with a window of 20, one claim takes all three small files"


def test_a_job_that_never_finishes_is_reported_then_gives_up_its_slot_and_is_tracked_on(tmp_path: Path) -> None:
    """``processing`` forever: reported once after overdue_job_seconds; after overdue_job_release_seconds the next
    file takes its max_active_jobs slot; the job is still followed and its results still published."""
    flow = one_folder(tmp_path, {"max_active_jobs": 1, "overdue_job_seconds": 3600,
                                 "overdue_job_release_seconds": 7200})
    flow.accept("a.png", "b.png")
    for _ in range(3):
        flow.run("upload", "submit")
    ledger = flow.services.ledger
    assert ledger.count_by_state()[S.SUBMITTED] == 1 and ledger.count_by_state()[S.UPLOADED] == 1
    stuck = next(iter(flow.client.jobs))
    flow.client.jobs[stuck] = replace(flow.client.jobs[stuck], state="processing", progress=0.5)
    reports = []
    for _ in range(100):  # looks every two minutes at most, for three hours
        flow.clock.advance(120)
        with capture_logs() as logs:
            flow.run("track", "submit")
        reports += [entry["event"] for entry in logs if entry["event"].startswith("job_overdue")]
        if ledger.count_by_state().get(S.OVERDUE):
            break
    assert reports == ["job_overdue", "job_overdue_slot_released"]
    assert ledger.overdue_jobs(flow.clock.now() - 3600)[0].job_id == stuck
    assert ledger.count_overdue_jobs(flow.clock.now() - 3600, 10) == 1
    flow.run("submit")
    assert ledger.count_by_state()[S.SUBMITTED] == 1, "the next file took the released slot"
    flow.client.finish()
    flow.clock.advance(300)
    flow.run("track", "publish", "publish")
    assert ledger.count_by_state() == {S.PUBLISHED: 2}


def _same_size_and_time(path: Path, content: bytes) -> None:
    """Put another file with ``content`` (the same size) at ``path``, with the old modification time: only its
    identity (device, inode) tells it apart."""
    info = path.stat()
    assert len(content) == info.st_size
    stand_in = path.with_name(".stand-in")
    stand_in.write_bytes(content)
    os.utime(stand_in, ns=(info.st_atime_ns, info.st_mtime_ns))
    stand_in.rename(path)


def test_a_file_swapped_after_it_was_checked_is_not_uploaded(flow: Flow) -> None:
    flow.accept("a.png")
    path = flow.watch / "a.png"
    _same_size_and_time(path, b"\0" * path.stat().st_size)

    flow.run("upload")

    assert flow.client.uploaded == [], "only the version that was sniffed may be sent"
    assert flow.services.ledger.query(relpaths=["a.png"], states=[S.UPLOADED]) == []


def test_a_folder_swapped_for_a_link_after_checking_is_not_followed_by_the_upload(tmp_path: Path) -> None:
    flow = one_folder(tmp_path)
    (flow.watch / "sub").mkdir()
    flow.drop("sub/a.png")
    flow.clock.advance(1)
    flow.run("settle", "sniff")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy2(flow.watch / "sub" / "a.png", elsewhere / "a.png")
    (flow.watch / "sub").rename(flow.watch / "sub.real")
    (flow.watch / "sub").symlink_to(elsewhere, target_is_directory=True)

    flow.run("upload")

    assert flow.client.uploaded == []
    assert flow.only().state != S.UPLOADED and "no longer a folder" in (flow.only().last_error or "")


def test_resource_errors_pause_the_file_without_counting_an_attempt(flow: Flow) -> None:
    flow.accept("a.png")
    flow.client.errors["upload"] = [OSError(errno.EAGAIN, "Resource temporarily unavailable")] * 20

    for _ in range(15):  # more rounds than MAX_ATTEMPTS
        flow.run("upload")
        flow.clock.advance(60)

    row = flow.only()
    assert row.state == S.ACCEPTED and row.attempts == 0, (row.state, row.attempts)
    assert "short of resources" in (row.last_error or "")


def test_a_long_retry_after_ends_the_step_and_becomes_the_rows_next_attempt(flow: Flow) -> None:
    flow.accept("a.png")
    flow.run("upload")
    flow.client.errors["create_job"] = [RateLimited("POST", "/jobs/", status=429, retry_after=300)]

    flow.run("submit")

    row = flow.only()
    assert row.state == S.UPLOADED and row.attempts == 0
    assert row.next_attempt_at == flow.clock.now() + 300


def test_old_jobs_behind_a_page_of_newer_ones_are_not_starved_by_a_tight_budget(tmp_path: Path) -> None:
    """Newest first, as DeepVA lists: two old jobs sit behind a hundred newer ones. With a budget that refills a
    request at a time, each walk used to spend it on the first page, and the old jobs were never looked at."""

    class NewestFirst(FakeClient):
        def list_jobs(self, *, offset: int = 0, limit: int = 10, tag: str | None = None, only: Any = None) -> JobPage:
            self._maybe_fail("list_jobs")
            jobs = list(reversed(self.jobs.values()))[offset:offset + limit]
            return JobPage(total=len(self.jobs), offset=offset, jobs=tuple(job for job in jobs if job.id in only),
                           has_next=offset + limit < len(self.jobs), listed=len(jobs))

    client = NewestFirst()
    flow = one_folder(tmp_path, {"max_requests_per_minute": 6, "poll_interval_seconds": 1}, client)
    flow.accept("a.png", "b.png")
    flow.run("upload", "upload", "submit", "submit")
    for index in range(100):
        client.jobs[f"newer-{index}"] = Job(id=f"newer-{index}", tag="another", state="completed", progress=1.0,
                                            sources=(), modules={})
    client.finish()
    for _ in range(60):  # a simulated minute, the tracker looking every second: six requests at most
        flow.clock.advance(1)
        flow.run("track")
    assert flow.services.ledger.count_by_state() == {S.COMPLETED: 2}
