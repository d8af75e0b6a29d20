"""Stages under the generic runner, with an injected clock and an in-memory stand-in for the DeepVA client.

These runs are deterministic: no threads, no sleeping; time moves only when the test moves it.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from deepva_watch import ledger as states
from deepva_watch.config import parse_config
from deepva_watch.daemon import Daemon
from deepva_watch.deepva import BadRequest, NotAuthenticated, ServerError, TransportError
from deepva_watch.deepva.models import Job, JobPage, StorageObject
from deepva_watch.ledger import Ledger
from deepva_watch.pipeline import MAX_ATTEMPTS, Services, StageRunner, folder_key, make_services
from deepva_watch.stages import STAGES
from deepva_watch.stages.discover import reconcile
from deepva_watch.stages.failures import REFUSED_KEY_RETRY_SECONDS
from tests.conftest import FIXTURES


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeClient:
    """Records calls; jobs complete when the test says so. Errors can be queued per method."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.jobs: dict[str, Job] = {}
        self.errors: dict[str, list[Exception]] = {}
        self.storage: dict[str, StorageObject] = {}

    def _maybe_fail(self, method: str) -> None:
        self.calls.append(method)
        queue = self.errors.get(method)
        if queue:
            raise queue.pop(0)

    def upload(self, path: Path, *, folder: str, filename: str, throttle=None, on_progress=None) -> StorageObject:
        self._maybe_fail("upload")
        stored = StorageObject(id=str(len(self.storage) + 1), url=f"storage://{filename}", name=filename,
                               file_size=path.stat().st_size, uploaded=True, upload_failed=False)
        self.storage[stored.id] = stored
        return stored

    def list_storage(self, folder: str):
        self._maybe_fail("list_storage")
        return list(self.storage.values())

    def delete_storage(self, storage_id: str) -> None:
        self._maybe_fail("delete_storage")
        self.storage.pop(storage_id, None)

    def list_jobs(self, *, offset: int = 0, limit: int = 10, tag=None, only=None):
        self._maybe_fail("list_jobs")
        jobs = list(self.jobs.values())[offset:offset + limit]
        read = tuple(job for job in jobs if only is None or job.id in only)
        return JobPage(total=len(self.jobs), offset=offset, jobs=read, has_next=offset + limit < len(self.jobs),
                       listed=len(jobs))

    def create_job(self, sources, modules, *, tag, webhook=None):
        self._maybe_fail("create_job")
        job = Job(id=f"job-{len(self.jobs) + 1}", tag=tag, state="waiting", progress=0.0, sources=tuple(sources),
                  modules=modules)
        self.jobs[job.id] = job
        return job

    def find_jobs_by_tag(self, tag):
        self._maybe_fail("find_jobs_by_tag")
        return [job for job in self.jobs.values() if job.tag == tag]

    def get_job(self, job_id):
        self._maybe_fail("get_job")
        return self.jobs[job_id]

    def finish(self, state: str = "completed", errors: tuple[str, ...] = ()) -> None:
        for job_id, job in self.jobs.items():
            self.jobs[job_id] = replace(job, state=state, progress=1.0, errors=errors)


def pipeline(config_data: dict, client: FakeClient | None = None):
    """Services over a real ledger, a fake clock and a fake client, and one runner per stage (driven by the test)."""
    config = parse_config(config_data)
    clock, client = FakeClock(), client or FakeClient()
    services = make_services(config, Ledger(config.ledger), client, clock)
    runners = {stage.name: StageRunner(stage, services, threading.Event(), lambda state, due_at: None) for stage in STAGES}
    return config, services, clock, client, runners


def one_folder(tmp_path: Path, top: dict, client: FakeClient | None = None):
    """A pipeline over one watched folder (settle 1 s) with the given top-level settings."""
    watch = tmp_path / "watch"
    watch.mkdir()
    data = {"ledger": str(tmp_path / "l.sqlite3"), **top,
            "folders": [{"path": str(watch), "modules": {"m": {}}, "settle_seconds": 1}]}
    return (watch, *pipeline(data, client))


@pytest.fixture
def setup(tmp_path):
    watch = tmp_path / "watch"
    watch.mkdir()
    _, services, clock, client, runners = pipeline({
        "ledger": str(tmp_path / "ledger.sqlite3"),
        "poll_interval_seconds": 5,
        "folders": [{"path": str(watch), "modules": {"face_recognition": {}}, "settle_seconds": 10}],
    })
    return watch, services, clock, client, runners


def _only(services: Services):
    (row,) = services.ledger.query()
    return row


def _run(runners, *names: str) -> None:
    for name in names:
        runners[name].run_once()


def test_a_file_waits_out_its_quiet_period_then_flows_to_submitted(setup):
    watch, services, clock, client, runners = setup
    shutil.copy(FIXTURES / "sample.jpg", watch / "a.jpg")
    reconcile(services.ledger, services.config.folders[0], clock.now())
    _run(runners, "settle")
    assert _only(services).state == states.SETTLING, "not settled before settle_seconds"
    clock.advance(10)
    _run(runners, "settle", "sniff", "upload", "submit")
    row = _only(services)
    assert row.state == states.SUBMITTED and row.mime == "image/jpeg" and row.content_hash.startswith("blake2b")
    assert client.calls == ["upload", "create_job"]
    assert row.next_attempt_at == clock.now() + 5

    _run(runners, "track")
    assert client.calls == ["upload", "create_job"], "a job is not polled before its poll interval"
    clock.advance(5)
    _run(runners, "track")
    assert _only(services).state == states.SUBMITTED and _only(services).job_state == "waiting"
    client.finish()
    clock.advance(5)
    _run(runners, "track")
    row = _only(services)
    assert row.state == states.SUBMITTED, "a job with no progress is asked about a little less often"
    assert row.next_attempt_at % 5 == 0, "looks fall on the poll grid, so one list request can serve many jobs"
    clock.advance(5)
    _run(runners, "track")
    assert _only(services).state == states.COMPLETED


def test_a_growing_file_is_not_taken_until_it_stops_changing(setup):
    watch, services, clock, client, runners = setup
    path = watch / "growing.mxf"
    path.write_bytes(b"x" * 10)
    reconcile(services.ledger, services.config.folders[0], clock.now())
    for size in (20, 30, 40):
        clock.advance(6)
        path.write_bytes(b"x" * size)
        _run(runners, "settle")
        assert _only(services).state == states.SETTLING
    clock.advance(10)
    _run(runners, "settle")
    row = _only(services)
    assert row.state == states.SETTLED and row.size == 40


def test_lost_create_response_is_reconciled_by_tag_not_by_a_second_job(setup):
    watch, services, clock, client, runners = setup
    shutil.copy(FIXTURES / "sample.png", watch / "a.png")
    reconcile(services.ledger, services.config.folders[0], clock.now())
    clock.advance(10)
    _run(runners, "settle", "sniff", "upload")

    real_create = client.create_job

    def create_then_lose_answer(sources, modules, *, tag, webhook=None):
        real_create(sources, modules, tag=tag)
        raise TransportError("POST", "/jobs/", reason="read timed out", maybe_applied=True)

    client.create_job = create_then_lose_answer  # type: ignore[method-assign]
    _run(runners, "submit")
    row = _only(services)
    assert row.state == states.UPLOADED and row.submit_attempted == 1 and len(client.jobs) == 1
    client.create_job = real_create  # type: ignore[method-assign]
    clock.advance(3600)
    _run(runners, "submit")
    row = _only(services)
    assert row.state == states.SUBMITTED and row.job_id == "job-1"
    assert len(client.jobs) == 1 and client.calls[-1] == "find_jobs_by_tag"


def test_transient_errors_back_off_then_park_as_failed(setup):
    watch, services, clock, client, runners = setup
    shutil.copy(FIXTURES / "sample.png", watch / "a.png")
    reconcile(services.ledger, services.config.folders[0], clock.now())
    clock.advance(10)
    _run(runners, "settle", "sniff")
    client.errors["upload"] = [ServerError("POST", "/storage/", status=503, excerpt="down")] * (MAX_ATTEMPTS + 1)
    delays = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        _run(runners, "upload")
        row = _only(services)
        if attempt < MAX_ATTEMPTS:
            assert row.state == states.ACCEPTED and row.attempts == attempt and "503" in row.last_error
            delays.append(row.next_attempt_at - clock.now())
            clock.advance(delays[-1])
    assert delays == sorted(delays) or delays[-1] > delays[0], "backoff grows"
    row = _only(services)
    assert row.state == states.FAILED and row.error_retryable == 1


def test_refused_key_and_bad_request_are_treated_differently(setup):
    watch, services, clock, client, runners = setup
    shutil.copy(FIXTURES / "sample.png", watch / "a.png")
    shutil.copy(FIXTURES / "sample.jpg", watch / "b.jpg")
    reconcile(services.ledger, services.config.folders[0], clock.now())
    clock.advance(10)
    _run(runners, "settle", "sniff")
    client.errors["upload"] = [NotAuthenticated("POST", "/storage/", status=401, excerpt="")]
    _run(runners, "upload")
    refused = next(a for a in services.ledger.query() if a.attempts == 0 and a.state == states.ACCEPTED and a.last_error)
    assert "refused the API key" in refused.last_error and refused.next_attempt_at == clock.now() + REFUSED_KEY_RETRY_SECONDS
    client.errors["create_job"] = [BadRequest("POST", "/jobs/", status=400, excerpt="bad modules")]
    _run(runners, "upload", "submit")
    failed = [a for a in services.ledger.query() if a.state == states.FAILED]
    assert len(failed) == 1 and failed[0].error_retryable == 0 and "400" in failed[0].last_error


def test_a_key_refused_mid_batch_hands_the_rest_of_the_batch_back_untouched(setup):
    """Job creation claims several rows at once; once DeepVA refuses the key (the daemon then closes the API gate),
    the rest of the batch must not each meet the same 401."""
    watch, services, clock, client, runners = setup
    for index in range(5):
        shutil.copy(FIXTURES / "sample.jpg", watch / f"{index}.jpg")
    reconcile(services.ledger, services.config.folders[0], clock.now())
    clock.advance(10)
    _run(runners, "settle", "sniff")
    for _ in range(5):
        _run(runners, "upload")
    real_create = client.create_job

    def refused(*args, **kwargs):
        services.api_gate.close("DeepVA refused the API key (HTTP 401)")  # what the daemon's response hook does
        raise NotAuthenticated("POST", "/jobs/", status=401, excerpt="")

    client.create_job = refused
    assert runners["submit"].run_once() == 5
    rows = services.ledger.query()
    assert sorted(row.state for row in rows) == [states.UPLOADED] * 5
    assert all(row.attempts == 0 for row in rows)
    assert sum(1 for row in rows if row.last_error) == 1  # only the one that met the 401
    assert runners["submit"].run_once() == 0  # the stage rests while the gate is closed

    client.create_job = real_create
    services.api_gate.open()
    clock.advance(REFUSED_KEY_RETRY_SECONDS)
    _run(runners, "submit")
    assert sorted(row.state for row in services.ledger.query()) == [states.SUBMITTED] * 5


def test_failed_job_records_its_errors(setup):
    watch, services, clock, client, runners = setup
    shutil.copy(FIXTURES / "sample.jpg", watch / "a.jpg")
    reconcile(services.ledger, services.config.folders[0], clock.now())
    clock.advance(10)
    _run(runners, "settle", "sniff", "upload", "submit")
    client.finish("failed", ("model not available",))
    clock.advance(5)
    _run(runners, "track")
    row = _only(services)
    assert row.state == states.JOB_FAILED and row.errors == ["model not available"]


def test_deleted_before_submission_ends_gone_quietly(setup):
    watch, services, clock, client, runners = setup
    shutil.copy(FIXTURES / "sample.jpg", watch / "a.jpg")
    reconcile(services.ledger, services.config.folders[0], clock.now())
    (watch / "a.jpg").unlink()
    clock.advance(10)
    _run(runners, "settle")
    assert _only(services).state == states.GONE
    assert client.calls == []
    assert folder_key(services.config.folders[0]) == _only(services).folder


def _accept(services, clock, watch, runners, names):
    for name in names:
        shutil.copy(FIXTURES / "sample.png", watch / name)
    reconcile(services.ledger, services.config.folders[0], clock.now())
    clock.advance(10)
    _run(runners, "settle")
    _run(runners, "sniff")


CLEAN_UP = {"delete_storage_after_completion": True, "delete_job_after_publish": True}


def _publish_one(tmp_path, top: dict, client: FakeClient):
    """One image from the folder to published (or as far as the client lets it), its job finishing at once."""
    watch, _, services, clock, client, runners = one_folder(tmp_path, top, client)
    _accept(services, clock, watch, runners, ["a.png"])
    _run(runners, "upload", "submit")
    client.finish()
    clock.advance(30)
    _run(runners, "track", "publish")
    return services, clock, client


def _results_and_deletions_recorded(client: FakeClient) -> FakeClient:
    client.iter_detailed_results = lambda job_id, page_size=100: iter(())  # type: ignore[attr-defined]
    client.delete_job = lambda job_id: client.calls.append("delete_job")  # type: ignore[attr-defined]
    return client


def test_max_active_jobs_holds_and_a_finished_job_frees_a_slot(tmp_path):
    watch, config, services, clock, client, runners = one_folder(tmp_path, {"max_active_jobs": 3, "max_uploads": 1})
    _accept(services, clock, watch, runners, [f"{i}.png" for i in range(8)])
    for _ in range(10):
        _run(runners, "upload", "submit")
    counts = services.ledger.count_by_state()
    assert counts[states.SUBMITTED] == 3, counts
    assert counts[states.UPLOADED] == 3 and counts[states.ACCEPTED] == 2, "uploads run ahead by one window, no more"
    client.finish()
    clock.advance(30)
    _run(runners, "track")
    assert client.calls.count("list_jobs") == 1 and client.calls.count("get_job") == 0, "one list call polls all"
    for _ in range(10):
        _run(runners, "upload", "submit")
    assert services.ledger.count_by_state()[states.SUBMITTED] == 3


def test_higher_priority_folder_goes_first_then_oldest(tmp_path):
    low, high = tmp_path / "low", tmp_path / "high"
    low.mkdir()
    high.mkdir()
    config, services, clock, client, runners = pipeline({
        "ledger": str(tmp_path / "l.sqlite3"),
        "folders": [
            {"path": str(low), "modules": {"m": {}}, "settle_seconds": 0},
            {"path": str(high), "modules": {"m": {}}, "settle_seconds": 0, "priority": 5},
        ],
    })
    for name in ("a.png", "b.png"):
        shutil.copy(FIXTURES / "sample.png", low / name)
    reconcile(services.ledger, config.folders[0], clock.now())
    shutil.copy(FIXTURES / "sample.png", high / "late.png")
    reconcile(services.ledger, config.folders[1], clock.now())
    clock.advance(1)
    _run(runners, "settle", "sniff")
    _run(runners, "upload")
    order = [client.storage[str(number)].name.split("_", 1)[1] for number in (1, 2, 3)]
    assert order == ["late.png", "a.png", "b.png"]


def test_failed_job_is_resubmitted_only_when_configured(tmp_path):
    watch, config, services, clock, client, runners = one_folder(tmp_path, {"retry_failed_jobs": True})
    _accept(services, clock, watch, runners, ["a.png"])
    for _ in range(3):
        _run(runners, "upload", "submit")
        client.finish("failed", ("GPU out of memory",))
        clock.advance(30)
        _run(runners, "track")
    row = _only(services)
    assert row.state == states.JOB_FAILED and row.job_failures == 3 and len(client.jobs) == 3


def test_cut_off_upload_leaves_no_duplicate_storage_object(setup):
    watch, services, clock, client, runners = setup
    _accept(services, clock, watch, runners, ["a.png"])
    real_upload = client.upload

    def upload_then_drop(path, **kwargs):
        real_upload(path, **kwargs)  # the server kept an object from the cut-off attempt
        raise TransportError("POST", "/storage/", reason="connection lost", maybe_applied=True)

    client.upload = upload_then_drop  # type: ignore[method-assign]
    _run(runners, "upload")
    assert _only(services).upload_attempted == 1 and len(client.storage) == 1
    client.upload = real_upload  # type: ignore[method-assign]
    clock.advance(3600)
    _run(runners, "upload")
    assert _only(services).state == states.UPLOADED
    assert len(client.storage) == 1, "the leftover was deleted before the new upload"


def test_poll_budget_caps_requests_per_minute(tmp_path):
    watch, config, services, clock, client, runners = one_folder(
        tmp_path, {"max_requests_per_minute": 6, "poll_interval_seconds": 1})
    _accept(services, clock, watch, runners, ["a.png", "b.png"])
    _run(runners, "upload", "upload", "submit", "submit")
    before = len(client.calls)
    for _ in range(60):  # one simulated minute, looking every second
        clock.advance(1)
        _run(runners, "track")
    polls = len(client.calls) - before
    assert 6 <= polls <= 6 + 1 + 1, f"{polls} status requests in a minute with a ceiling of 6"


def test_storage_and_job_are_deleted_only_after_the_results_are_written_and_recorded(tmp_path, monkeypatch):
    import importlib

    publish_module = importlib.import_module("deepva_watch.stages.publish")

    client = _results_and_deletions_recorded(FakeClient())
    states_when_deleting: list[str] = []
    real_delete_storage = client.delete_storage

    def delete_storage(storage_id: str) -> None:  # the row must say published first: a repeat needs the job
        states_when_deleting.extend(Ledger(tmp_path / "l.sqlite3", readonly=True).count_by_state())
        real_delete_storage(storage_id)

    client.delete_storage = delete_storage  # type: ignore[method-assign]
    real_publish = publish_module.publish_results

    def recording_publish(*args, **kwargs):
        written = real_publish(*args, **kwargs)
        client.calls.append("sidecars_written")
        return written

    monkeypatch.setattr(publish_module, "publish_results", recording_publish)
    services, _, client = _publish_one(tmp_path, CLEAN_UP, client)
    row = _only(services)
    assert row.state == states.PUBLISHED
    assert client.calls[-3:] == ["sidecars_written", "delete_storage", "delete_job"]
    assert states_when_deleting == [states.PUBLISHED]
    assert client.storage == {}
    assert Path(row.json_path).exists() and Path(row.xmp_path).exists()


class _RecordingPublisher:
    """Stands in for the publishing process (tested against it in tests/test_publish_process.py): writes in this
    process, and notes when each file's write is handed over and when its answer is collected."""

    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.events: list[tuple[str, str]] = []

    def submit(self, job):
        from deepva_watch.stages.publish import write_sidecars

        self.events.append(("handed", job.media_path.name))

        def result():
            self.events.append(("collected", job.media_path.name))
            return write_sidecars(self.client, job)

        return SimpleNamespace(result=result)


def test_a_publishing_worker_hands_its_whole_claim_over_before_it_waits_for_an_answer(tmp_path):
    """Sent one at a time, each answer waited for a turn at the daemon's interpreter lock before the next file went
    out, and under a backlog the publishing process idled in between. A row that cannot start (its file is gone)
    is decided by its own step; the others are not held up by it."""
    client = _results_and_deletions_recorded(FakeClient())
    watch, _, services, clock, client, runners = one_folder(tmp_path, {}, client)
    names = ["a.png", "b.png", "c.png", "d.png", "e.png"]
    _accept(services, clock, watch, runners, names)
    for _ in names:
        _run(runners, "upload")
    _run(runners, "submit")
    client.finish()
    clock.advance(30)
    _run(runners, "track")
    (watch / "b.png").unlink()
    services.publisher = publisher = _RecordingPublisher(client)
    assert next(stage for stage in STAGES if stage.name == "publish").claims == 4
    batches = []
    while services.ledger.count_by_state().get(states.COMPLETED):
        _run(runners, "publish")
        batches.append(publisher.events)
        publisher.events = []
    assert len(batches) == 2  # a claim of four, then the last row
    for batch in batches:
        handed = [name for event, name in batch if event == "handed"]
        assert batch == [("handed", name) for name in handed] + [("collected", name) for name in handed]
    assert sorted(name for batch in batches for event, name in batch if event == "handed") == ["a.png", "c.png",
                                                                                             "d.png", "e.png"]
    by_name = {Path(row.path).name: row for row in services.ledger.query()}
    assert {name: row.state for name, row in by_name.items()} == {
        **{name: states.PUBLISHED for name in names if name != "b.png"}, "b.png": states.GONE}
    assert all(Path(by_name[name].xmp_path).exists() for name in names if name != "b.png")


def test_a_clean_up_that_failed_or_was_cut_off_is_tried_again(tmp_path):
    """DeepVA refused the first deletion, and a crash cut off the next file's clean-up before it began: both rows are
    published with their clean-up still marked; the sweep at start takes every row marked before it, the minute's
    sweep only those a minute old, and a clean row is never swept again."""
    from deepva_watch.stages.publish import CLEAN_UP_RETRY_SECONDS, clean_up, sweep_clean_ups

    def a_minute_ago() -> float:
        return clock.now() - CLEAN_UP_RETRY_SECONDS

    client = _results_and_deletions_recorded(FakeClient())
    client.errors["delete_storage"] = [ServerError("DELETE", "/storage/1/", status=503, excerpt="busy")]
    services, clock, client = _publish_one(tmp_path, CLEAN_UP, client)
    refused = _only(services)
    assert refused.state == states.PUBLISHED and refused.cleanup_pending == 1
    assert len(client.storage) == 1 and "delete_job" not in client.calls

    assert sweep_clean_ups(services, a_minute_ago()) == 0, "not a minute old yet"
    clock.advance(61)
    assert sweep_clean_ups(services, a_minute_ago()) == 1
    assert client.storage == {} and client.calls.count("delete_job") == 1
    assert services.ledger.get(refused.id).cleanup_pending == 0
    before = len(client.calls)
    clock.advance(1)
    assert sweep_clean_ups(services, clock.now()) == 0 and len(client.calls) == before

    services.ledger.transition(services.ledger.get(refused.id), states.PUBLISHED, states.PUBLISHED, clock.now(),
                               cleanup_pending=1)  # as a crash right after the commit leaves it
    assert sweep_clean_ups(services, clock.now()) == 0, "marked at the very moment of the start: not before it"
    clock.advance(1)  # the restart
    assert sweep_clean_ups(services, clock.now()) == 1
    assert services.ledger.get(refused.id).cleanup_pending == 0
    assert clean_up(services, services.ledger.get(refused.id)), "deleting twice is harmless"


def test_without_clean_up_nothing_is_marked(tmp_path):
    services, _, client = _publish_one(tmp_path, {}, _results_and_deletions_recorded(FakeClient()))
    row = _only(services)
    assert row.state == states.PUBLISHED and row.cleanup_pending == 0
    assert "delete_storage" not in client.calls


def test_the_tracker_pages_past_jobs_that_are_not_ours(tmp_path):
    """Other clients' jobs fill the first page; ours are on the second. The page is read only for our jobs, and it is
    still counted whole to reach the next one."""
    client = FakeClient()
    for index in range(150):
        client.jobs[f"other-{index}"] = Job(id=f"other-{index}", tag="someone else", state="completed", progress=1.0,
                                               sources=(), modules={})
    watch, _, services, clock, client, runners = one_folder(tmp_path, {}, client)
    _accept(services, clock, watch, runners, ["a.png", "b.png", "c.png"])
    for _ in range(3):
        _run(runners, "upload", "submit")
    client.finish()
    clock.advance(30)
    _run(runners, "track")
    assert services.ledger.count_by_state() == {states.COMPLETED: 3}
    assert client.calls.count("list_jobs") == 2 and client.calls.count("get_job") == 0


def test_an_unknown_job_state_is_logged_and_polled_on(setup):
    from structlog.testing import capture_logs

    watch, services, clock, client, runners = setup
    _accept(services, clock, watch, runners, ["a.png"])
    _run(runners, "upload", "submit")
    client.finish("queued_for_gpu")
    client.jobs = {key: replace(job, progress=0.0) for key, job in client.jobs.items()}
    with capture_logs() as logs:
        clock.advance(30)
        _run(runners, "track")
    row = _only(services)
    assert row.state == states.SUBMITTED and row.job_state == "queued_for_gpu"
    assert any(entry["event"] == "job_state_unknown" and entry["state"] == "queued_for_gpu" for entry in logs)
    client.finish()
    clock.advance(120)
    _run(runners, "track")
    assert _only(services).state == states.COMPLETED


def test_a_resting_worker_is_woken_only_for_rows_due_before_it_looks_again(tmp_path):
    """A job submitted now is first polled on the next grid time: waking the tracker for each would cost a ledger
    look and two thread switches per job. A freed slot always wakes the stage waiting for it."""
    *_, services, clock, _, runners = one_folder(tmp_path, {})
    track, submit = runners["track"], runners["submit"]
    daemon = SimpleNamespace(runners=[track, submit])
    for runner in (track, submit):
        runner.idle, runner.sleeps_until = True, clock.now() + 0.5

    Daemon._wake_stage_for(daemon, states.SUBMITTED, clock.now() + 2.0)
    assert not track.wakeup.is_set()
    Daemon._wake_stage_for(daemon, states.SUBMITTED, clock.now() + 0.2)
    assert track.wakeup.is_set()

    track.wakeup.clear()
    track.idle = False  # busy: it may have read the ledger before the row landed, so it must look again
    Daemon._wake_stage_for(daemon, states.SUBMITTED, clock.now() + 60.0)
    assert track.wakeup.is_set()

    Daemon._wake_stage_for(daemon, states.COMPLETED, clock.now() + 60.0)  # a job ended: a slot is free now
    assert submit.wakeup.is_set()


def test_rows_landing_together_wake_as_many_resting_workers(tmp_path):
    """Three publishing workers at rest and two jobs finishing in one commit: two workers start, not one twice."""
    *_, services, _, _, runners = one_folder(tmp_path, {})
    stage = next(stage for stage in STAGES if stage.name == "publish")
    workers = [StageRunner(stage, services, threading.Event(), lambda *_: None) for _ in range(3)]
    for worker in workers:
        worker.idle = True
    daemon = SimpleNamespace(runners=workers)

    for _ in range(2):
        Daemon._wake_stage_for(daemon, states.COMPLETED)
    assert [worker.wakeup.is_set() for worker in workers] == [True, True, False]
    for _ in range(2):  # more rows than resting workers: the ones woken already will find them
        Daemon._wake_stage_for(daemon, states.COMPLETED)
    assert all(worker.wakeup.is_set() for worker in workers)


def _spy_on_commits(services: Services) -> list[int]:
    """The size of every commit the runners make: 1 for a single transition, n for a batch of n."""
    sizes: list[int] = []
    ledger = services.ledger
    single, many = ledger.transition, ledger.transition_many

    def transition(*args, **kwargs):
        sizes.append(1)
        return single(*args, **kwargs)

    def transition_many(moves, now):
        sizes.append(len(moves))
        return many(moves, now)

    ledger.transition, ledger.transition_many = transition, transition_many  # type: ignore[method-assign]
    return sizes


def test_a_batch_is_committed_together(tmp_path):
    watch, config, services, clock, client, runners = one_folder(tmp_path, {})
    for name in ("a.png", "b.png", "c.png"):
        shutil.copy(FIXTURES / "sample.png", watch / name)
    reconcile(services.ledger, config.folders[0], clock.now())
    clock.advance(10)
    commits = _spy_on_commits(services)
    _run(runners, "settle")
    assert commits == [3]
    assert services.ledger.count_by_state() == {states.SETTLED: 3}


def test_a_slow_batch_is_committed_at_least_once_a_second(tmp_path):
    """Steps that take long (uploads here, 0.6 s each) do not hold their outcomes back until the batch ends."""
    watch, config, services, clock, client, runners = one_folder(tmp_path, {})
    _accept(services, clock, watch, runners, ["a.png", "b.png", "c.png"])
    upload = client.upload

    def slow_upload(*args, **kwargs):
        clock.advance(0.6)
        return upload(*args, **kwargs)

    client.upload = slow_upload  # type: ignore[method-assign]
    commits = _spy_on_commits(services)
    _run(runners, "upload")
    assert commits == [2, 1], "the first two outcomes land once a second has passed, the third at the end"
    assert services.ledger.count_by_state() == {states.UPLOADED: 3}


def test_a_worker_claims_no_more_than_its_share_of_the_window(tmp_path):
    """Two upload workers and a window of three: one claim takes one file, so that the other worker gets work too."""
    watch, config, services, clock, client, runners = one_folder(tmp_path, {"max_uploads": 2, "max_active_jobs": 3})
    _accept(services, clock, watch, runners, ["a.png", "b.png", "c.png"])
    _run(runners, "upload")
    assert client.calls.count("upload") == 1
    (tmp_path / "wide").mkdir()
    watch2, config2, services2, clock2, client2, runners2 = one_folder(tmp_path / "wide", {"max_uploads": 2})
    _accept(services2, clock2, watch2, runners2, ["a.png", "b.png", "c.png"])
    _run(runners2, "upload")
    assert client2.calls.count("upload") == 3, "with a window of 20, one claim takes all three small files"
