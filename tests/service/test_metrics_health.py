"""The metrics endpoint, read over real HTTP and parsed with prometheus-client's own parser, and /healthz."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from deepva_watch.ledger import Ledger, SqliteLedger
from deepva_watch.service.health import Health, is_api_failure, ledger_write_problem
from deepva_watch.listener import Listener
from deepva_watch.service.metrics import Metrics
from deepva_watch.service.web import web_app
from deepva_watch.watch.supervisor import FolderStatus


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    ledger.observe("/srv/a", "one.jpg", 10, 1, now=1000.0)
    ledger.observe("/srv/a", "two.jpg", 10, 1, now=1000.0)
    published = ledger.observe("/srv/b", "clip.mxf", 10, 1, now=1000.0)
    row = ledger.by_asset_id(published.asset_id or "")
    assert row is not None
    ledger.transition(row, "settling", "published", 1001.0)
    return ledger


class Endpoint:
    def __init__(self, server: Listener, health: Health, metrics: Metrics, folders: list[FolderStatus],
                 ledger_problem: list[str | None], clock: Clock) -> None:
        self.server, self.health, self.metrics = server, health, metrics
        self.folders, self.ledger_problem, self.clock = folders, ledger_problem, clock

    def get(self, path: str) -> tuple[int, str]:
        host, port = self.server.address
        try:
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()


@pytest.fixture
def endpoint(ledger: Ledger) -> Iterator[Endpoint]:
    folders = [FolderStatus("/srv/a", "events", False, "", 1990.0, 2), FolderStatus("/srv/b", "poll", False, "", None, 0)]
    problem: list[str | None] = [None]
    wall, monotonic = Clock(2000.0), Clock(50.0)
    health = Health(api_failure_seconds=300, folder_statuses=lambda: folders, ledger_problem=lambda: problem[0], clock=monotonic)
    metrics = Metrics(ledger_counts=ledger.count_by_folder_and_state, folder_statuses=lambda: folders, clock=wall)
    server = Listener("127.0.0.1:0", web_app(metrics, health), name="metrics").start()
    try:
        yield Endpoint(server, health, metrics, folders, problem, monotonic)
    finally:
        server.stop()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_are_served_in_prometheus_format(endpoint: Endpoint) -> None:
    endpoint.metrics.uploaded_bytes(1500)
    endpoint.metrics.uploaded_bytes(500)
    endpoint.metrics.api_call("GET", "/jobs/{id}/", 200)
    endpoint.metrics.api_call("POST", "/jobs/", 503)
    endpoint.metrics.api_call("POST", "/jobs/", 503)
    endpoint.metrics.api_call("POST", "/storage/", None)
    endpoint.metrics.job_finished(42.0, "completed")
    endpoint.metrics.job_finished(4000.0, "failed")

    status, body = endpoint.get("/metrics")
    assert status == 200
    samples = _samples(body)
    assert samples[("deepva_watch_assets", (("folder", "/srv/a"), ("state", "settling")))] == 2
    assert samples[("deepva_watch_assets", (("folder", "/srv/b"), ("state", "published")))] == 1
    assert samples[("deepva_watch_backlog_files", ())] == 2
    assert samples[("deepva_watch_uploaded_bytes_total", ())] == 2000
    assert samples[("deepva_watch_api_requests_total", (("method", "GET"), ("route", "/jobs/{id}/"), ("status", "200")))] == 1
    assert samples[("deepva_watch_api_errors_total", (("method", "POST"), ("status", "503")))] == 2
    assert samples[("deepva_watch_api_errors_total", (("method", "POST"), ("status", "none")))] == 1
    assert ("deepva_watch_api_errors_total", (("method", "GET"), ("status", "200"))) not in samples
    assert samples[("deepva_watch_job_duration_seconds_count", (("state", "completed"),))] == 1
    assert samples[("deepva_watch_job_duration_seconds_bucket", (("le", "60.0"), ("state", "completed")))] == 1
    assert samples[("deepva_watch_job_duration_seconds_bucket", (("le", "3600.0"), ("state", "failed")))] == 0
    assert samples[("deepva_watch_folder_last_scan_age_seconds", (("folder", "/srv/a"),))] == 10.0
    assert ("deepva_watch_folder_last_scan_age_seconds", (("folder", "/srv/b"),)) not in samples  # never scanned yet
    assert samples[("deepva_watch_folder_paused", (("folder", "/srv/b"),))] == 0


def test_metrics_follow_the_ledger_at_scrape_time(endpoint: Endpoint, ledger: Ledger) -> None:
    ledger.observe("/srv/a", "three.jpg", 10, 1, now=1002.0)
    samples = _samples(endpoint.get("/metrics")[1])
    assert samples[("deepva_watch_assets", (("folder", "/srv/a"), ("state", "settling")))] == 3


def test_a_registry_per_instance_keeps_daemons_apart(ledger: Ledger) -> None:
    first = Metrics(ledger_counts=ledger.count_by_folder_and_state, folder_statuses=lambda: [])
    second = Metrics(ledger_counts=ledger.count_by_folder_and_state, folder_statuses=lambda: [])
    first.uploaded_bytes(10)
    assert _samples(second.exposition().decode())[("deepva_watch_uploaded_bytes_total", ())] == 0


def test_an_unreadable_ledger_does_not_break_the_scrape() -> None:
    def broken() -> dict[tuple[str, str], int]:
        raise OSError("disk gone")

    metrics = Metrics(ledger_counts=broken, folder_statuses=lambda: [FolderStatus("/x", "events", True, "gone", 1.0, 0)])
    samples = _samples(metrics.exposition().decode())
    assert samples[("deepva_watch_folder_paused", (("folder", "/x"),))] == 1


def _health(endpoint: Endpoint) -> tuple[int, dict[str, Any]]:
    status, body = endpoint.get("/healthz")
    return status, json.loads(body)


def test_healthz_is_green_then_red_with_each_reason(endpoint: Endpoint) -> None:
    assert _health(endpoint) == (200, {"status": "ok", "healthy": True, "reasons": [], "warnings": []})

    endpoint.folders[0] = FolderStatus("/srv/a", "poll", False, "", 1990.0, 2, warning="events stopped arriving", events_missed=3)
    assert _health(endpoint) == (200, {"status": "degraded", "healthy": True, "reasons": [],
                                       "warnings": ["folder /srv/a: events stopped arriving"]})
    endpoint.folders[0] = FolderStatus("/srv/a", "events", False, "", 1990.0, 2)

    endpoint.folders[1] = FolderStatus("/srv/b", "poll", True, "anchor file .mounted is missing", None, 0)
    status, report = _health(endpoint)
    assert status == 503 and report["healthy"] is False
    assert report["reasons"] == ["folder /srv/b is paused: anchor file .mounted is missing"]
    endpoint.folders[1] = FolderStatus("/srv/b", "poll", False, "", 1999.0, 0)

    endpoint.health.api_failed(503)
    endpoint.clock.now += 299
    assert _health(endpoint)[0] == 200  # failing, but not for longer than api_failure_seconds yet
    endpoint.health.api_failed(None)
    endpoint.clock.now += 2
    status, report = _health(endpoint)
    assert status == 503
    assert report["reasons"] == ["every DeepVA API call has failed for 301 s (last: no answer)"]
    endpoint.health.api_ok()
    assert _health(endpoint)[0] == 200

    endpoint.ledger_problem[0] = "/var/lib/deepva-watch is on a read-only file system"
    status, report = _health(endpoint)
    assert status == 503
    assert report["reasons"] == ["ledger not writable: /var/lib/deepva-watch is on a read-only file system"]


def test_only_failures_that_mean_the_api_is_down_start_the_failure_clock() -> None:
    assert [is_api_failure(s) for s in (None, 500, 503, 401, 403, 429)] == [True] * 6
    assert [is_api_failure(s) for s in (200, 201, 400, 404, 409)] == [False] * 5
    clock = Clock(0.0)
    health = Health(api_failure_seconds=10, folder_statuses=lambda: [], ledger_problem=lambda: None, clock=clock)
    health.api_result(503)
    clock.now = 5
    health.api_result(404)  # DeepVA answered: it is up, whatever it thought of that request
    clock.now = 20
    assert health.check().healthy
    health.api_result(401)
    clock.now = 31
    assert health.check().reasons == ("every DeepVA API call has failed for 11 s (last: HTTP 401)",)


def test_ledger_write_problem_finds_what_even_root_cannot_write(tmp_path: Path) -> None:
    good = tmp_path / "ledger.sqlite3"
    assert ledger_write_problem(good) is None
    SqliteLedger(good)
    assert ledger_write_problem(good) is None
    (tmp_path / "dir.sqlite3").mkdir()
    assert ledger_write_problem(tmp_path / "dir.sqlite3") == f"{tmp_path / 'dir.sqlite3'} is not a regular file"
    (tmp_path / "file").write_text("")
    assert ledger_write_problem(tmp_path / "file" / "ledger.sqlite3") == f"{tmp_path / 'file'} is not a directory"
    assert ledger_write_problem(Path("/proc/sys/ledger.sqlite3")) is not None  # procfs: no new files, even for root


def test_the_endpoint_answers_404_elsewhere(endpoint: Endpoint) -> None:
    assert endpoint.get("/")[0] == 404


def test_the_configured_listen_setting_is_understood_for_ipv4_and_ipv6(ledger: Ledger) -> None:
    health = Health(api_failure_seconds=1, folder_statuses=lambda: [], ledger_problem=lambda: None)
    metrics = Metrics(ledger_counts=ledger.count_by_folder_and_state, folder_statuses=lambda: [])
    for listen, address in (("127.0.0.1:65500", ("127.0.0.1", 65500)), ("[::1]:65501", ("::1", 65501))):
        server = Listener(listen, web_app(metrics, health), name="metrics")
        try:
            assert server.address == address
        finally:
            server.stop()
