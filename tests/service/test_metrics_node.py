"""/metrics of one node among several: every sample carries ``node``, read over real HTTP and parsed with
prometheus-client's own parser; the gauge of live nodes follows the ledger; the alert rules still fire, per node."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from deepva_watch.ledger import Ledger, SqliteLedger
from deepva_watch.listener import Listener
from deepva_watch.service.health import Health
from deepva_watch.service.metrics import Metrics
from deepva_watch.service.web import web_app
from deepva_watch.watch.supervisor import FolderStatus
from tests.conftest import require_program
from tests.test_contrib import RULES, assert_alerts

NODE = "media01"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    ledger.observe("/srv/a", "one.jpg", 10, 1, now=1000.0)
    try:
        yield ledger
    finally:
        ledger.close()


def _scrape(metrics: Metrics) -> list[Sample]:
    """The samples of /metrics, as Prometheus reads them over HTTP."""
    health = Health(api_failure_seconds=300, folder_statuses=lambda: [], ledger_problem=lambda: None)
    server = Listener("127.0.0.1:0", web_app(metrics, health), name="metrics").start()
    host, port = server.address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        server.stop()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def _busy(metrics: Metrics) -> Metrics:
    """Something in every family the daemon counts itself."""
    metrics.uploaded_bytes(1500)
    metrics.api_call("POST", "/jobs/", 503)
    metrics.job_finished(42.0, "completed")
    return metrics


def test_every_sample_carries_the_node(ledger: Ledger) -> None:
    ledger.join(NODE, "media01.example", 4242, time.time(), 30.0)
    folders = [FolderStatus("/srv/a", "events", False, "", 990.0, 1)]
    metrics = _busy(Metrics(ledger_counts=ledger.count_by_folder_and_state, folder_statuses=lambda: folders,
                            overdue_jobs=lambda: 1, nodes=ledger.nodes, node=NODE))
    samples = _scrape(metrics)
    names = {sample.name for sample in samples}
    assert {"deepva_watch_build_info", "deepva_watch_uploaded_bytes_total", "deepva_watch_api_errors_total",
            "deepva_watch_job_duration_seconds_bucket", "deepva_watch_jobs_overdue", "deepva_watch_assets",
            "deepva_watch_folder_paused", "deepva_watch_nodes_alive"} <= names
    unlabelled = [sample for sample in samples if sample.labels.get("node") != NODE]
    assert unlabelled == []
    by_key = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value for sample in samples}
    assert by_key[("deepva_watch_assets", (("folder", "/srv/a"), ("node", NODE), ("state", "settling")))] == 1
    assert by_key[("deepva_watch_api_errors_total", (("method", "POST"), ("node", NODE), ("status", "503")))] == 1
    assert by_key[("deepva_watch_job_duration_seconds_bucket", (("le", "60.0"), ("node", NODE),
                                                                 ("state", "completed")))] == 1
    assert by_key[("deepva_watch_nodes_alive", (("node", NODE),))] == 1


def test_the_live_nodes_follow_the_ledger_at_scrape_time(ledger: Ledger) -> None:
    now = time.time()
    metrics = Metrics(ledger_counts=ledger.count_by_folder_and_state, folder_statuses=lambda: [], nodes=ledger.nodes,
                      node=NODE, clock=lambda: now)

    def alive() -> float:
        (value,) = [sample.value for sample in _scrape(metrics) if sample.name == "deepva_watch_nodes_alive"]
        return value

    assert alive() == 0
    ledger.join(NODE, "media01.example", 4242, now - 10, 30.0)
    assert alive() == 1
    ledger.heartbeat(now - 31)  # silent for longer than its lease
    assert alive() == 0
    ledger.heartbeat(now)
    ledger.leave(now)
    assert alive() == 0


def test_a_name_with_quotes_and_a_line_break_is_escaped(ledger: Ledger) -> None:
    hostile = 'rack "7"\\a\nb'
    samples = _scrape(Metrics(ledger_counts=ledger.count_by_folder_and_state, folder_statuses=lambda: [], node=hostile))
    assert samples and {sample.labels["node"] for sample in samples} == {hostile}


def test_without_a_node_the_exposition_is_as_before(ledger: Ledger) -> None:
    samples = _scrape(_busy(Metrics(ledger_counts=ledger.count_by_folder_and_state, folder_statuses=lambda: [])))
    assert samples and not any("node" in sample.labels for sample in samples)
    assert "deepva_watch_nodes_alive" not in {sample.name for sample in samples}  # no nodes callable, no gauge


def test_an_unreadable_node_list_does_not_break_the_scrape(ledger: Ledger) -> None:
    def broken() -> list[Any]:
        raise OSError("database gone")

    samples = _scrape(Metrics(ledger_counts=ledger.count_by_folder_and_state, folder_statuses=lambda: [],
                              nodes=broken, node=NODE))
    names = {sample.name for sample in samples}
    assert "deepva_watch_assets" in names and "deepva_watch_nodes_alive" not in names


def _series(name: str, values: str, node: str, **labels: str) -> dict[str, str]:
    every = {"instance": f"{node}:9187", "job": "deepva-watch", "node": node, **labels}
    return {"series": name + "{" + ", ".join(f'{key}="{value}"' for key, value in every.items()) + "}",
            "values": values}


def _firing(alertname: str, node: str, *, keeps_node: bool = True, **labels: str) -> dict[str, Any]:
    """The alert with the node's labels and its own; ``keeps_node``: the rule keeps the ``node`` label (a rule that
    sums by instance and job does not)."""
    rule = next(rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
                if rule["alert"] == alertname)
    every = {"instance": f"{node}:9187", "job": "deepva-watch", **labels}
    annotations = {key: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda match: every[match.group(1)], text)
                   for key, text in rule["annotations"].items()}
    kept = {"node": node} if keeps_node else {}
    return {"exp_labels": {**every, **kept, **rule["labels"]}, "exp_annotations": annotations}


def test_the_alert_rules_fire_per_node_with_the_label(tmp_path: Path) -> None:
    """Series as two nodes of one ledger export them: the rules match and aggregate them as before, and an alert of a
    sample keeps the node it came from."""
    promtool = require_program("promtool")
    series = [
        _series("deepva_watch_folder_paused", "0 0 1x20", "media01", folder="/srv/in"),
        _series("deepva_watch_folder_paused", "0x20", "media02", folder="/srv/in"),
        _series("deepva_watch_folder_last_scan_age_seconds", "0+60x60", "media01", folder="/srv/share"),
        _series("deepva_watch_folder_paused", "0x60", "media01", folder="/srv/share"),
        _series("deepva_watch_folder_last_scan_age_seconds", "0+60x60", "media02", folder="/srv/share"),
        _series("deepva_watch_folder_paused", "1x60", "media02", folder="/srv/share"),
        _series("deepva_watch_api_requests_total", "0+10x30", "media01", method="GET", route="/jobs/", status="503"),
        _series("deepva_watch_api_errors_total", "0+10x30", "media01", method="GET", status="503"),
        _series("deepva_watch_api_requests_total", "0+10x30", "media02", method="GET", route="/jobs/", status="200"),
        _series("deepva_watch_jobs_overdue", "0 0 1x30", "media02"),
    ]
    cases = [
        {"eval_time": "10m", "alertname": "DeepvaWatchFolderPaused",
         "exp_alerts": [_firing("DeepvaWatchFolderPaused", "media01", folder="/srv/in"),
                        _firing("DeepvaWatchFolderPaused", "media02", folder="/srv/share")]},
        {"eval_time": "45m", "alertname": "DeepvaWatchFolderNotScanned",  # media02's share is paused: its own alert
         "exp_alerts": [_firing("DeepvaWatchFolderNotScanned", "media01", folder="/srv/share")]},
        {"eval_time": "20m", "alertname": "DeepvaWatchApiFailing",
         "exp_alerts": [_firing("DeepvaWatchApiFailing", "media01", keeps_node=False)]},
        {"eval_time": "20m", "alertname": "DeepvaWatchJobsOverdue",
         "exp_alerts": [_firing("DeepvaWatchJobsOverdue", "media02")]},
    ]
    assert_alerts(promtool, tmp_path, series, cases)
