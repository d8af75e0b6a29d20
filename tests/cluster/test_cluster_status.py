"""What operators see of the nodes of a PostgreSQL ledger: ``status`` (text and JSON), the status page and /status.json,
and /metrics, each against a real PostgreSQL with nodes joined by real ledger handles."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Callable

from prometheus_client.parser import text_string_to_metric_families

from deepva_watch.config import load_config
from deepva_watch.flow.transfers import Transfers
from deepva_watch.listener import Listener
from deepva_watch.service.health import Health
from deepva_watch.service.metrics import Metrics
from deepva_watch.service.page import StatusPage
from deepva_watch.service.status import Sources
from deepva_watch.service.web import web_app
from tests.cluster.nodes import Cluster, busy_cluster
from tests.commands.conftest import CliResult
from tests.ledger.conftest import PASSWORD

Cli = Callable[..., CliResult]



def test_status_lists_every_node_alive_dead_or_left_with_the_rows_it_holds(cluster: Cluster, cli: Cli) -> None:
    busy_cluster(cluster)
    config = cluster.config()

    result = cli("status", "-c", str(config), "--json")
    assert result.code == 0, result.err
    report = result.json()
    assert report["ledger"] == cluster.url
    nodes = {node["name"]: node for node in report["nodes"]}
    assert [node["name"] for node in report["nodes"]] == ["alpha", "beta", "gamma"]  # the live ones first
    assert nodes["alpha"]["state"] == "alive" and nodes["alpha"]["rows_held"] == 2
    assert nodes["alpha"]["host"] == "media01" and nodes["alpha"]["pid"] == 4101
    assert 0 <= nodes["alpha"]["last_beat_seconds_ago"] < 30
    assert nodes["beta"]["state"] == "dead" and nodes["beta"]["last_beat_seconds_ago"] >= 90
    assert nodes["gamma"]["state"] == "left" and nodes["gamma"]["left_at"] is not None
    assert PASSWORD not in result.out + result.err

    text = cli("status", "-c", str(config))
    assert text.code == 0, text.err
    assert "nodes: 1 of 3 alive" in text.out
    lines = {line.split()[0]: line for line in text.out.splitlines() if line.startswith("  ") and "pid" in line}
    assert "alive" in lines["alpha"] and "media01 pid 4101" in lines["alpha"] and "2 row(s) held" in lines["alpha"]
    assert "dead" in lines["beta"] and "last beat 1.5m ago" in lines["beta"]
    assert "left" in lines["gamma"] and "0 row(s) held" in lines["gamma"]


def test_a_node_whose_clock_is_ahead_shows_a_heartbeat_in_the_future(cluster: Cluster, cli: Cli) -> None:
    cluster.join("ahead", "media09", 4109, time.time() + 600)
    result = cli("status", "-c", str(cluster.config()))
    assert result.code == 0, result.err
    assert "last beat 10.0m in the future (its clock is ahead)" in result.out


def test_the_page_json_and_metrics_of_a_node_show_the_cluster(cluster: Cluster) -> None:
    busy_cluster(cluster)
    config = load_config(cluster.config(metrics={"listen": "127.0.0.1:9187"}), check_paths=False)
    ledger = cluster.handle()
    health = Health(api_failure_seconds=300, folder_statuses=lambda: [], ledger_problem=lambda: None)
    sources = Sources(ledger=ledger, config=lambda: config, folders=lambda: [], uploads=Transfers().running,
                      health=health, node="alpha")
    metrics = Metrics(ledger_counts=ledger.count_by_folder_and_state, folder_statuses=lambda: [], nodes=ledger.nodes,
                      node="alpha")
    server = Listener("127.0.0.1:0", web_app(metrics, health, StatusPage(sources)), name="metrics").start()
    host, port = server.address
    try:
        def get(path: str) -> str:
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as response:
                body: str = response.read().decode()
                return body

        overview = json.loads(get("/status.json"))
        assert [(node["name"], node["state"], node["rows_held"]) for node in overview["nodes"]] == [
            ("alpha", "alive", 2), ("beta", "dead", 0), ("gamma", "left", 0)]
        page = get("/")
        assert '<tr data-node="alpha">' in page and "(this one)" in page
        assert '<span class="badge bad">dead</span>' in page and "media02" in page
        samples = [sample for family in text_string_to_metric_families(get("/metrics")) for sample in family.samples]
        assert samples and all(sample.labels.get("node") == "alpha" for sample in samples)
        alive = [sample.value for sample in samples if sample.name == "deepva_watch_nodes_alive"]
        assert alive == [1.0]
    finally:
        server.stop()
