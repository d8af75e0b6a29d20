"""The status page and /status.json list the nodes working on the ledger, over real HTTP against a real ledger; a
node's name and host are shown escaped, and the node serving the page is marked."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from deepva_watch.config import Config, parse_config
from deepva_watch.flow.transfers import Transfers
from deepva_watch.ledger import Ledger, SqliteLedger
from deepva_watch.listener import Listener
from deepva_watch.service.health import Health
from deepva_watch.service.metrics import Metrics
from deepva_watch.service.page import StatusPage
from deepva_watch.service.status import Sources
from deepva_watch.service.web import web_app

HOSTILE = "<script>alert(1)</script>"


class Page:
    def __init__(self, tmp_path: Path, node: str | None) -> None:
        self.ledger: Ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
        config: Config = parse_config({"folders": [{"path": "/srv/media", "modules": {"face_recognition": {}}}],
                                       "ledger": str(tmp_path / "ledger.sqlite3"),
                                       "metrics": {"listen": "127.0.0.1:9187"}}, check_paths=False)
        health = Health(api_failure_seconds=300, folder_statuses=lambda: [], ledger_problem=lambda: None)
        sources = Sources(ledger=self.ledger, config=lambda: config, folders=lambda: [], uploads=Transfers().running,
                          health=health, node=node)
        metrics = Metrics(ledger_counts=self.ledger.count_by_folder_and_state, folder_statuses=lambda: [])
        self.server = Listener("127.0.0.1:0", web_app(metrics, health, StatusPage(sources)), name="metrics").start()

    def get(self, path: str) -> str:
        host, port = self.server.address
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as response:
            body: str = response.read().decode()
            return body

    def close(self) -> None:
        self.server.stop()
        self.ledger.close()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    page = Page(tmp_path, "media01")
    try:
        yield page
    finally:
        page.close()


def test_the_page_lists_the_node_marks_itself_and_escapes_names(page: Page) -> None:
    page.ledger.join("media01", HOSTILE, 4242, time.time() - 3, 30.0)
    overview = json.loads(page.get("/status.json"))
    (node,) = overview["nodes"]
    assert (node["name"], node["host"], node["pid"], node["state"]) == ("media01", HOSTILE, 4242, "alive")
    assert overview["node"] == "media01"
    html = page.get("/")
    assert '<table id="nodes">' in html and '<tr data-node="media01">' in html
    assert "media01 <span class=\"quiet\">(this one)</span>" in html
    assert '<span class="badge good">alive</span>' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and HOSTILE not in html


def test_a_node_that_left_or_whose_clock_is_ahead_is_shown_so(page: Page) -> None:
    page.ledger.join("media01", "media01.example", 4242, time.time() + 300, 30.0)
    html = page.get("/")
    assert "5.0 m in the future" in html and 'title="its clock is ahead of this one"' in html
    page.ledger.leave(time.time())
    html = page.get("/")
    assert '<span class="badge quiet">left</span>' in html and " ago</td>" in html


def test_before_any_node_joined_the_page_says_so(page: Page) -> None:
    assert "No daemon has joined the ledger yet." in page.get("/")
    assert json.loads(page.get("/status.json"))["nodes"] == []
