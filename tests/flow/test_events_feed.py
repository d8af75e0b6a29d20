"""The /events feed: a client that reads, stops, and reads again from its cursor sees every finished file once."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from deepva_watch.listener import Listener
from deepva_watch.service.health import Health
from deepva_watch.service.metrics import Metrics
from deepva_watch.service.web import web_app
from tests.flow.conftest import Flow, one_folder


def _read(port: int, after: int, limit: int = 100) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/events?after={after}&limit={limit}", timeout=5) as answer:
        return dict(json.load(answer))


def _finish(flow: Flow, *names: str, state: str = "completed") -> None:
    flow.drop(*names)
    flow.clock.advance(2)
    for _ in range(4):
        flow.run("settle", "sniff", "upload", "submit")
    flow.client.finish(state, errors=("bad media",) if state == "failed" else ())
    flow.clock.advance(900)  # past when the tracker expects jobs of the kind to be done
    for _ in range(6):
        flow.run("track", "publish", "report")
        flow.clock.advance(1)  # past the moment the tracker gathers jobs due together
    assert not [row for row in flow.services.ledger.query() if row.state not in ("published", "failed")]


def test_a_client_that_stops_and_comes_back_sees_every_finished_file_once(tmp_path: Path) -> None:
    flow = one_folder(tmp_path)
    health = Health(api_failure_seconds=60, folder_statuses=list, ledger_problem=lambda: None)
    metrics = Metrics(ledger_counts=dict, folder_statuses=list)
    server = Listener("127.0.0.1:0", web_app(metrics, health, ledger=flow.services.ledger), name="metrics").start()
    port = server.address[1]
    try:
        _finish(flow, "a.png", "b.png", "c.png")
        first = _read(port, 0, limit=2)
        assert len(first["events"]) == 2
        _finish(flow, "d.png")
        flow.client.jobs.clear()
        _finish(flow, "e.png", state="failed")
        rest = _read(port, first["next"])
        again = _read(port, rest["next"])

        seen = [event["relpath"] for event in first["events"] + rest["events"]]
        assert sorted(seen) == ["a.png", "b.png", "c.png", "d.png", "e.png"] and len(set(seen)) == 5
        assert again == {"events": [], "next": rest["next"]}
        failed = next(event for event in rest["events"] if event["relpath"] == "e.png")
        assert failed["outcome"] == "failed" and "bad media" in failed["error"]
        done = first["events"][0]
        assert done["outcome"] == "done" and done["json_path"].endswith(".deepva.json") and done["job_id"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/events?after=x", timeout=5) as answer:
            raise AssertionError(f"a bad cursor must be refused, got {answer.status}")
    except urllib.error.HTTPError as error:
        assert error.code == 400
    finally:
        server.stop()


def test_a_folder_named_by_id_is_worked_where_this_node_mounts_it_and_its_events_say_where(tmp_path: Path) -> None:
    flow = one_folder(tmp_path, id="news-incoming")
    _finish(flow, "a.jpg")
    (row,) = flow.services.ledger.query()
    assert (row.folder, row.relpath, row.state) == ("news-incoming", "a.jpg", "published")
    assert (flow.watch / "a.jpg.xmp").is_file() and row.xmp_path == str(flow.watch.absolute() / "a.jpg.xmp")
    health = Health(api_failure_seconds=60, folder_statuses=list, ledger_problem=lambda: None)
    metrics = Metrics(ledger_counts=dict, folder_statuses=list)
    app = web_app(metrics, health, ledger=flow.services.ledger, roots=lambda: {"news-incoming": flow.watch.absolute()})
    server = Listener("127.0.0.1:0", app, name="metrics").start()
    try:
        (event,) = _read(server.address[1], 0)["events"]
    finally:
        server.stop()
    assert (event["folder"], event["path"]) == ("news-incoming", str(flow.watch.absolute() / "a.jpg"))
