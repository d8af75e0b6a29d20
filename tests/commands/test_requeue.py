"""retry, reprocess and forget change the ledger exactly as documented, and refuse what is not theirs to change."""

from __future__ import annotations

from typing import Any, Callable

from tests.commands.conftest import CliResult, Setup

Cli = Callable[..., CliResult]
JOB = {"job_id": "job-1", "storage_url": "deepva://storage/1", "storage_id": "s1", "kind": "image", "mime": "image/jpeg",
       "submitted_at": 1001.0, "submit_attempted": 1}


def test_retry_returns_each_failed_file_to_the_stage_it_failed_in(setup: Setup, cli: Cli) -> None:
    setup.add("upload.jpg", "failed", kind="image", mime="image/jpeg", last_error="HTTP 503", attempts=10,
              error_retryable=1, failed_in="upload")
    setup.add("job.jpg", "failed", **JOB, job_state="failed", job_errors='["no faces"]', completed_at=1002.0,
              last_error="DeepVA job failed: no faces", failed_in="report")
    setup.add("publish.jpg", "failed", **JOB, job_state="completed", completed_at=1002.0, last_error="disk full",
              failed_in="publish")
    setup.add("submit.jpg", "failed", kind="image", storage_url="deepva://storage/2", submit_attempted=1,
              last_error="400", failed_in="submit")
    setup.add("track.jpg", "failed", **JOB, job_state="processing", last_error="HTTP 500", failed_in="track")
    setup.add("sniff.jpg", "failed", last_error="cannot read", failed_in="sniff")
    setup.add("fine.jpg", "published", **JOB, job_state="completed")

    result = cli("retry", "-c", str(setup.config), "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert document["command"] == "retry" and document["changed"] == 6
    moves = {item["path"].rsplit("/", 1)[1]: (item["from"], item["to"]) for item in document["results"]}
    assert moves == {
        "upload.jpg": ("failed", "accepted"),
        "job.jpg": ("failed", "uploaded"),
        "publish.jpg": ("failed", "completed"),
        "submit.jpg": ("failed", "uploaded"),
        "track.jpg": ("failed", "submitted"),
        "sniff.jpg": ("failed", "settling"),
    }
    assert all(row.failed_in is None for row in setup.ledger.query())

    upload = setup.row("upload.jpg")
    assert (upload.state, upload.attempts, upload.last_error, upload.error_retryable) == ("accepted", 0, None, None)
    job = setup.row("job.jpg")
    assert (job.state, job.job_id, job.job_state, job.job_errors, job.submit_attempted) == ("uploaded", None, None, None, 0)
    assert job.storage_url == "deepva://storage/1"  # the uploaded copy is used again
    publish = setup.row("publish.jpg")
    assert (publish.state, publish.job_id, publish.job_state) == ("completed", "job-1", "completed")
    submit = setup.row("submit.jpg")
    assert (submit.state, submit.submit_attempted) == ("uploaded", 1)  # a job may exist: look for its tag first
    assert setup.row("fine.jpg").state == "published"

    again = cli("retry", "-c", str(setup.config))
    assert (again.code, again.out.strip()) == (0, "retry: nothing to do")


def test_retry_of_named_paths_refuses_files_that_did_not_fail(setup: Setup, cli: Cli) -> None:
    setup.add("a.jpg", "failed", kind="image", last_error="boom", failed_in="upload")
    setup.add("b.jpg", "submitted", **JOB, job_state="processing")
    result = cli("retry", "-c", str(setup.config), "--json", str(setup.watch / "a.jpg"), str(setup.watch / "b.jpg"))
    assert result.code == 1
    results = result.json()["results"]
    assert [(r["done"], r["to"]) for r in results] == [(True, "accepted"), (False, None)]
    assert results[1]["detail"] == "not failed (it is submitted)"
    assert setup.row("b.jpg").state == "submitted"


def test_reprocess_creates_a_new_job_even_for_a_published_file(setup: Setup, cli: Cli) -> None:
    setup.add("done.jpg", "published", **JOB, job_state="completed", completed_at=1002.0, published_at=1003.0,
              xmp_path="/x/done.jpg.xmp")
    result = cli("reprocess", "-c", str(setup.config), "--json", str(setup.watch / "done.jpg"))
    assert result.code == 0, result.out
    assert result.json()["results"][0] | {"asset_id": None} == {
        "path": str(setup.watch / "done.jpg"), "asset_id": None, "done": True, "from": "published", "to": "uploaded",
        "detail": "a new job will be created",
    }
    row = setup.row("done.jpg")
    assert (row.state, row.job_id, row.published_at, row.submit_attempted) == ("uploaded", None, None, 0)


def test_reprocess_uploads_again_when_uploaded_copies_are_deleted(tmp_path: Any, cli: Cli) -> None:
    from deepva_watch.ledger import SqliteLedger
    from tests.conftest import write_config

    watch = tmp_path / "watch"
    watch.mkdir()
    config = write_config(tmp_path, "http://127.0.0.1:9/api/v1", [watch], delete_storage_after_completion=True)
    setup = Setup(config, watch, SqliteLedger(tmp_path / "ledger.sqlite3"))
    setup.add("done.jpg", "published", **JOB, job_state="completed")
    assert cli("reprocess", "-c", str(config), str(watch / "done.jpg")).code == 0
    row = setup.row("done.jpg")
    assert (row.state, row.storage_url, row.job_id) == ("accepted", None, None)


def test_reprocess_refuses_rows_the_daemon_is_working_on(setup: Setup, cli: Cli) -> None:
    setup.add("busy.jpg", "uploading", kind="image")
    setup.add("running.jpg", "submitted", **JOB, job_state="processing")
    setup.add("queued.jpg", "accepted", kind="image")
    result = cli("reprocess", "-c", str(setup.config), "--json",
                 *(str(setup.watch / name) for name in ("busy.jpg", "running.jpg", "queued.jpg")))
    assert result.code == 1
    details = [item["detail"] for item in result.json()["results"]]
    assert details == [
        "the daemon is working on it right now (uploading); try again in a moment",
        "its DeepVA job is still under way (submitted); wait for it to finish",
        "already queued (accepted)",
    ]
    assert [setup.row(n).state for n in ("busy.jpg", "running.jpg", "queued.jpg")] == ["uploading", "submitted", "accepted"]


def test_forget_removes_every_version_but_not_while_a_worker_holds_one(setup: Setup, cli: Cli) -> None:
    setup.add("old.jpg", "published", **JOB, job_state="completed")
    setup.add("busy.jpg", "publishing", **JOB, job_state="completed")
    result = cli("forget", "-c", str(setup.config), "--json", str(setup.watch / "old.jpg"), str(setup.watch / "busy.jpg"),
                 str(setup.watch / "never-seen.jpg"))
    assert result.code == 1
    results = result.json()["results"]
    assert [(r["done"], r["detail"]) for r in results] == [
        (True, "1 version(s) removed"),
        (False, "the daemon is working on it right now; try again in a moment"),
        (False, "not in the ledger"),
    ]
    assert setup.ledger.latest_version(str(setup.watch), "old.jpg") is None
    assert setup.row("busy.jpg").state == "publishing"


def test_a_path_outside_every_watched_folder_is_an_error(setup: Setup, cli: Cli, tmp_path: Any) -> None:
    result = cli("forget", "-c", str(setup.config), "--json", str(tmp_path / "elsewhere.jpg"))
    assert result.code == 1
    assert result.json() == {"error": f"{tmp_path / 'elsewhere.jpg'} is not inside any watched folder"}


def test_relative_paths_are_resolved_against_the_current_directory(setup: Setup, cli: Cli, monkeypatch: Any) -> None:
    setup.add("sub/a.jpg", "failed", kind="image", last_error="x", failed_in="upload")
    monkeypatch.chdir(setup.watch / "sub")
    assert cli("retry", "-c", str(setup.config), "a.jpg").code == 0
    assert setup.row("sub/a.jpg").state == "accepted"
