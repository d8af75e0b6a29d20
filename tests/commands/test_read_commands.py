"""status and assets: read-only views of the ledger, as text and as JSON."""

from __future__ import annotations

import re
import time
from typing import Any, Callable

from deepva_watch.service.health import Health
from deepva_watch.listener import Listener
from deepva_watch.service.metrics import Metrics
from deepva_watch.service.web import web_app
from tests.commands.conftest import CliResult, Setup
from tests.conftest import write_config

Cli = Callable[..., CliResult]


def test_status_reports_counts_oldest_waiting_and_recent_errors(setup: Setup, cli: Cli) -> None:
    setup.add("a.jpg", "published")
    setup.add("b.jpg", "failed", last_error="DeepVA job failed: corrupt file")
    setup.add("c.jpg", "accepted", last_error="HTTP 503 from POST /storage/", attempts=2)
    setup.add("d.jpg", "superseded", last_error="a newer version of the file arrived")

    result = cli("status", "-c", str(setup.config), "--json")
    assert result.code == 0, result.err
    report = result.json()
    folder = str(setup.watch)
    assert report["folders"] == {folder: {"accepted": 1, "failed": 1, "published": 1, "superseded": 1}}
    assert report["totals"]["published"] == 1 and report["backlog"] == 1
    assert report["oldest_waiting"]["path"] == "c.jpg"
    assert [error["path"] for error in report["recent_errors"]] == ["c.jpg", "b.jpg"]  # same time: newest row first
    assert report["api"] == {
        "source": "ledger", "detail": "metrics.listen is not set: only the ledger's retries are known", "retrying": 1,
        "last_error": "HTTP 503 from POST /storage/", "last_error_at": report["api"]["last_error_at"],
    }

    text = cli("status", "-c", str(setup.config))
    assert text.code == 0
    assert "oldest waiting:" in text.out and "DeepVA job failed: corrupt file" in text.out


def test_status_asks_the_running_daemon_for_its_health(tmp_path: Any, cli: Cli) -> None:
    from deepva_watch.ledger import SqliteLedger

    watch = tmp_path / "watch"
    watch.mkdir()
    SqliteLedger(tmp_path / "ledger.sqlite3")
    clock = [0.0]
    health = Health(api_failure_seconds=60, folder_statuses=lambda: [], ledger_problem=lambda: None, clock=lambda: clock[0])
    metrics = Metrics(ledger_counts=dict, folder_statuses=lambda: [])
    server = Listener("127.0.0.1:0", web_app(metrics, health), name="metrics").start()
    try:
        host, port = server.address
        config = write_config(tmp_path, "http://127.0.0.1:9/api/v1", [watch], metrics={"listen": f"{host}:{port}"})
        assert cli("status", "-c", str(config), "--json").json()["api"]["healthy"] is True
        health.api_failed(None)
        clock[0] = 61.0
        api = cli("status", "-c", str(config), "--json").json()["api"]
        assert api["healthy"] is False and api["reasons"][0].startswith("every DeepVA API call has failed")
    finally:
        server.stop()
    api = cli("status", "-c", str(config), "--json").json()["api"]
    assert api["reachable"] is False


def test_status_without_a_ledger_says_so(tmp_path: Any, cli: Cli) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    config = write_config(tmp_path, "http://127.0.0.1:9/api/v1", [watch])
    result = cli("status", "-c", str(config), "--json")
    assert result.code == 1
    assert "no ledger at" in result.json()["error"]


def test_assets_filters_by_state_folder_and_age(setup: Setup, cli: Cli) -> None:
    setup.add("old.jpg", "failed", last_error="x")
    setup.add("new.jpg", "published")
    setup.ledger.transition(setup.row("new.jpg"), "published", "published", time.time(), created_at=time.time())

    everything = cli("assets", "-c", str(setup.config), "--json").json()["assets"]
    assert sorted(row["path"] for row in everything) == ["new.jpg", "old.jpg"]
    failed = cli("assets", "-c", str(setup.config), "--json", "--state", "failed").json()["assets"]
    assert [row["path"] for row in failed] == ["old.jpg"]
    old = cli("assets", "-c", str(setup.config), "--json", "--older-than", "1h").json()["assets"]
    assert [row["path"] for row in old] == ["old.jpg"]
    recent = cli("assets", "-c", str(setup.config), "--json", "--newer-than", "10m").json()["assets"]
    assert [row["path"] for row in recent] == ["new.jpg"]
    assert cli("assets", "-c", str(setup.config), "--json", "--folder", str(setup.watch)).json()["assets"]
    assert cli("assets", "-c", str(setup.config), "--json", "--folder", "/elsewhere").code == 2  # not watched
    text = cli("assets", "-c", str(setup.config), "--state", "failed")
    assert "old.jpg" in text.out and "new.jpg" not in text.out


def test_read_commands_leave_the_ledger_untouched(setup: Setup, cli: Cli) -> None:
    setup.add("a.jpg", "failed", last_error="x")
    before = setup.config.parent.joinpath("ledger.sqlite3").stat().st_mtime_ns
    cli("status", "-c", str(setup.config), "--json")
    cli("assets", "-c", str(setup.config), "--json")
    cli("assets", "-c", str(setup.config), "--json", f"{setup.watch}/*.jpg")
    cli("show", "-c", str(setup.config), "--json", str(setup.watch / "a.jpg"))
    assert setup.row("a.jpg").state == "failed"
    assert setup.config.parent.joinpath("ledger.sqlite3").stat().st_mtime_ns == before


def test_overdue_jobs_show_in_status_health_and_metrics(setup: Setup, cli: Cli) -> None:
    """A job running past overdue_job_seconds: named by ``status``, amber in health, counted in the metrics."""
    from deepva_watch.config import load_config
    from deepva_watch.daemon import Daemon
    from deepva_watch.deepva import DeepVAClient

    now = time.time()
    setup.add("slow.mp4", "submitted", job_id="job-slow", submitted_at=now - 90000)
    setup.add("released.mp4", "overdue", job_id="job-older", submitted_at=now - 200000)
    setup.add("fresh.mp4", "submitted", job_id="job-fresh", submitted_at=now - 60)

    report = cli("status", "-c", str(setup.config), "--json").json()
    assert [(job["path"], job["job_id"], job["state"]) for job in report["overdue_jobs"]] == [
        ("released.mp4", "job-older", "overdue"), ("slow.mp4", "job-slow", "submitted")]
    text = cli("status", "-c", str(setup.config)).out
    assert "overdue jobs" in text and "slow.mp4: job job-slow running for 1.0d (submitted)" in text

    daemon = Daemon(load_config(setup.config), DeepVAClient("http://127.0.0.1:9/api/v1", "key"))
    try:
        health = daemon.health.check()
        assert health.status == "degraded"
        assert health.warnings == (f"2 DeepVA job(s) running longer than 24 h (oldest: {setup.watch}/released.mp4, "
                                   "job job-older, 55.6 h)",)
        assert re.search(r"^deepva_watch_jobs_overdue(\{[^}]*\})? 2\.0$", daemon.metrics.exposition().decode(), re.M)
    finally:
        daemon.ledger.close()
