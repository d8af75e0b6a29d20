"""contrib/: the Grafana dashboard and the Prometheus alert rules ask only for what the daemon exports, and both parse.

The names are taken, as Prometheus would scrape them, from a real :class:`~deepva_watch.service.metrics.Metrics` over a
real ledger and from a real daemon's; the rules are checked and run against sample series by promtool itself
(``promtool test rules``), and so are the dashboard's queries (``promtool check rules``).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from deepva_watch.config import load_config
from deepva_watch.daemon import Daemon
from deepva_watch.deepva import DeepVAClient
from deepva_watch.ledger import SqliteLedger
from deepva_watch.service.metrics import Metrics
from deepva_watch.states import FINAL
from tests.conftest import require_program, write_config

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "contrib" / "grafana" / "deepva-watch.dashboard.json"
RULES = ROOT / "contrib" / "prometheus" / "deepva-watch.rules.yml"
METRIC_NAME = re.compile(r"\bdeepva_watch_[a-z0-9_]+")
#: What an operator looks at first, by the families the daemon exports (the issue's list of panels).
DASHBOARD_MUST_SHOW = {
    "deepva_watch_backlog_files", "deepva_watch_assets", "deepva_watch_uploaded_bytes", "deepva_watch_api_errors",
    "deepva_watch_job_duration_seconds", "deepva_watch_folder_paused", "deepva_watch_folder_degraded",
    "deepva_watch_events_missed", "deepva_watch_jobs_overdue", "deepva_watch_names_skipped",
    "deepva_watch_folder_last_scan_age_seconds", "deepva_watch_budget_spent", "deepva_watch_budget_reached",
}
INSTANCE = "media01:9187"


@dataclass(frozen=True)
class Folder:
    """The fields of a folder's watch status that metrics read."""

    folder: str
    paused: bool
    reason: str
    last_scan_at: float | None
    warning: str = ""
    events_missed: int = 0
    names_skipped: int = 0


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[set[str], set[str]]:
    """(sample names, family names) of a daemon's metrics with something in every family: a Metrics fed sample data,
    and a real daemon's, whose config has a daily budget (its metrics exist only then)."""
    names = _names(_sample_metrics(tmp_path_factory.mktemp("metrics")))
    tmp = tmp_path_factory.mktemp("daemon")
    watch = tmp / "watch"
    watch.mkdir()
    config = write_config(tmp, "http://127.0.0.1:9/api/v1", [watch], budget={"images_per_day": 100})
    daemon = Daemon(load_config(config), DeepVAClient("http://127.0.0.1:9/api/v1", "key"))
    try:
        daemon_names = _names(daemon.metrics.exposition())
    finally:
        daemon.ledger.close()
    return names[0] | daemon_names[0], names[1] | daemon_names[1]


def _names(exposition: bytes) -> tuple[set[str], set[str]]:
    families = list(text_string_to_metric_families(exposition.decode()))
    return {sample.name for family in families for sample in family.samples}, {family.name for family in families}


def _sample_metrics(tmp: Path) -> bytes:
    ledger = SqliteLedger(tmp / "ledger.sqlite3")
    for relpath in ("a.jpg", "b.mxf"):
        ledger.observe("/srv/in", relpath, 10, 1, now=1000.0)
    folders = [Folder("/srv/in", False, "", 990.0, events_missed=1, names_skipped=2),
               Folder("/srv/share", True, "root gone", None, warning="events went deaf")]
    metrics = Metrics(ledger_counts=ledger.count_by_folder_and_state, folder_statuses=lambda: folders,
                      clock=lambda: 1000.0, overdue_jobs=lambda: 1)
    metrics.uploaded_bytes(1024)
    metrics.api_call("POST", "/storage/", 503)
    metrics.api_call("GET", "/jobs/{id}/", 200)
    metrics.job_finished(42.0, "completed")
    try:
        return metrics.exposition()
    finally:
        ledger.close()


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in _dashboard()["panels"] for target in panel["targets"]]


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def assert_alerts(promtool: str, tmp_path: Path, series: list[dict[str, Any]], cases: list[dict[str, Any]]) -> None:
    """``promtool test rules`` runs the shipped rules over ``series`` and must find exactly the alerts of ``cases``."""
    unit = {"rule_files": [str(RULES)], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases}]}
    path = tmp_path / "alerts.test.yml"
    path.write_text(yaml.safe_dump(unit, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_the_dashboard_and_rules_query_is_one_the_daemon_exports(exported: tuple[set[str], set[str]]) -> None:
    samples, _ = exported
    asked = {name: source for source, exprs in (("dashboard", _dashboard_exprs()),
                                                 ("rules", [rule["expr"] for rule in _rules()]))
             for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert len(asked) >= 12
    unknown = {name: source for name, source in asked.items() if name not in samples}
    assert not unknown, f"queried but not exported: {unknown}; the daemon exports {sorted(samples)}"
    shown = {name for expr in _dashboard_exprs() for name in METRIC_NAME.findall(expr)}
    missing = {family for family in DASHBOARD_MUST_SHOW
               if not any(name == family or name.startswith(family + "_") for name in shown)}
    assert not missing, f"the dashboard shows nothing of {sorted(missing)}"


def test_a_reached_budget_has_its_alert_and_its_panel(exported: tuple[set[str], set[str]]) -> None:
    _, families = exported
    assert {"deepva_watch_budget_reached", "deepva_watch_budget_spent"} <= families
    (rule,) = [rule for rule in _rules() if "deepva_watch_budget_reached" in rule["expr"]]
    assert rule["alert"] == "DeepvaWatchBudgetReached"
    shown = " ".join(_dashboard_exprs())
    assert "deepva_watch_budget_reached" in shown and "deepva_watch_budget_spent" in shown


def test_a_backlog_that_moves_is_one_whose_files_reach_any_final_state() -> None:
    (rule,) = [rule for rule in _rules() if rule["alert"] == "DeepvaWatchBacklogNotMoving"]
    (states,) = re.findall(r'deepva_watch_assets\{state=~"([a-z_|]+)"\}', rule["expr"])
    assert set(states.split("|")) == {str(state) for state in FINAL}


def test_the_dashboard_is_an_importable_grafana_dashboard() -> None:
    dashboard = _dashboard()
    assert dashboard["title"] == "deepva-watch" and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert "deepva_watch_build_info" in variables["instance"]["definition"]
    panels = dashboard["panels"]
    assert len(panels) >= 12
    assert len({panel["id"] for panel in panels}) == len(panels)
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["title"] and panel["type"] in {"stat", "timeseries", "heatmap"}, panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        assert panel["targets"], panel["title"]
        assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"])
        for target in panel["targets"]:
            assert target["expr"].strip() and '{instance=~"$instance"' in target["expr"], target


def test_the_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each query, with Grafana's variables filled in, checked by promtool as a recording rule."""
    promtool = require_program("promtool")
    exprs = [expr.replace("$__rate_interval", "5m").replace("$instance", ".*") for expr in _dashboard_exprs()]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query{index}", "expr": expr}
                                                        for index, expr in enumerate(exprs)]}]}
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = require_program("promtool")
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def _series(name: str, values: str, instance: str = INSTANCE, **labels: str) -> dict[str, str]:
    shown = ", ".join(f'{key}="{value}"' for key, value in {"instance": instance, "job": "deepva-watch", **labels}.items())
    return {"series": f"{name}{{{shown}}}", "values": values}


def _firing(alertname: str, instance: str = INSTANCE, **labels: str) -> dict[str, Any]:
    """An alert as the rule file says it fires: its labels and its annotations filled in with them."""
    rule = next(rule for rule in _rules() if rule["alert"] == alertname)
    every = {"instance": instance, "job": "deepva-watch", **labels}
    annotations = {key: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda match: every[match.group(1)], text)
                   for key, text in rule["annotations"].items()}
    return {"exp_labels": {**every, **rule["labels"]}, "exp_annotations": annotations}


def _case(alertname: str, at: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alertname, "exp_alerts": list(alerts)}


def test_the_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    """Sample series for each alert, one situation that must fire it and one close to it that must not."""
    promtool = require_program("promtool")
    other = "media02:9187"
    series = [
        _series("up", "1 1 0x20"),
        _series("deepva_watch_folder_paused", "0 0 1x20", folder="/srv/in"),
        # scans stopped in /srv/in; /srv/share is paused, which its own alert reports
        _series("deepva_watch_folder_last_scan_age_seconds", "0+60x60", folder="/srv/in"),
        _series("deepva_watch_folder_last_scan_age_seconds", "0+60x60", instance=other, folder="/srv/share"),
        _series("deepva_watch_folder_paused", "1x60", instance=other, folder="/srv/share"),
        # files wait on both; only the second one finishes any
        _series("deepva_watch_backlog_files", "5x90"),
        _series("deepva_watch_assets", "10x90", folder="/srv/in", state="published"),
        _series("deepva_watch_backlog_files", "5x90", instance=other),
        _series("deepva_watch_assets", "10+1x90", instance=other, folder="/srv/share", state="published"),
        _series("deepva_watch_assets", "1 1 1 2x10", folder="/srv/in", state="failed"),
        # every call fails on the first; only 404s (one request's fault) on the second
        _series("deepva_watch_api_requests_total", "0+10x30", method="GET", route="/jobs/", status="503"),
        _series("deepva_watch_api_errors_total", "0+10x30", method="GET", status="503"),
        _series("deepva_watch_api_requests_total", "0+10x30", instance=other, method="GET", route="/jobs/", status="404"),
        _series("deepva_watch_api_errors_total", "0+10x30", instance=other, method="GET", status="404"),
        _series("deepva_watch_api_errors_total", "0 0 0 1x10", instance=other, method="POST", status="401"),
        _series("deepva_watch_folder_degraded", "0x10", folder="/srv/in"),
        _series("deepva_watch_events_missed_total", "0 0 0 2x10", folder="/srv/in"),
        _series("deepva_watch_folder_degraded", "1x10", instance=other, folder="/srv/share"),
        _series("deepva_watch_events_missed_total", "0x10", instance=other, folder="/srv/share"),
        _series("deepva_watch_jobs_overdue", "0 0 1x30"),
        _series("deepva_watch_names_skipped", "3x90", folder="/srv/in"),
        _series("deepva_watch_budget_reached", "0 0 1x5"),
    ]
    cases = [
        _case("DeepvaWatchDown", "4m"),
        _case("DeepvaWatchDown", "10m", _firing("DeepvaWatchDown")),
        _case("DeepvaWatchFolderPaused", "4m"),
        _case("DeepvaWatchFolderPaused", "10m", _firing("DeepvaWatchFolderPaused", folder="/srv/in"),
              _firing("DeepvaWatchFolderPaused", instance=other, folder="/srv/share")),
        _case("DeepvaWatchFolderNotScanned", "25m"),
        _case("DeepvaWatchFolderNotScanned", "45m", _firing("DeepvaWatchFolderNotScanned", folder="/srv/in")),
        _case("DeepvaWatchBacklogNotMoving", "30m"),
        _case("DeepvaWatchBacklogNotMoving", "70m", _firing("DeepvaWatchBacklogNotMoving")),
        _case("DeepvaWatchFailedFilesRising", "2m"),
        _case("DeepvaWatchFailedFilesRising", "5m", _firing("DeepvaWatchFailedFilesRising", folder="/srv/in",
                                                             state="failed")),
        _case("DeepvaWatchApiFailing", "8m"),
        _case("DeepvaWatchApiFailing", "20m", _firing("DeepvaWatchApiFailing")),
        _case("DeepvaWatchApiKeyRefused", "2m"),
        _case("DeepvaWatchApiKeyRefused", "5m", _firing("DeepvaWatchApiKeyRefused", instance=other)),
        _case("DeepvaWatchEventsDeaf", "5m", _firing("DeepvaWatchEventsDeaf", folder="/srv/in"),
              _firing("DeepvaWatchEventsDeaf", instance=other, folder="/srv/share")),
        _case("DeepvaWatchJobsOverdue", "10m"),
        _case("DeepvaWatchJobsOverdue", "20m", _firing("DeepvaWatchJobsOverdue")),
        _case("DeepvaWatchNamesSkipped", "30m"),
        _case("DeepvaWatchNamesSkipped", "70m", _firing("DeepvaWatchNamesSkipped", folder="/srv/in")),
        _case("DeepvaWatchBudgetReached", "1m"),
        _case("DeepvaWatchBudgetReached", "3m", _firing("DeepvaWatchBudgetReached")),
    ]
    assert_alerts(promtool, tmp_path, series, cases)
    assert {rule["alert"] for rule in _rules()} == {case["alertname"] for case in cases}
