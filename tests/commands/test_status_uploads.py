"""``status`` shows the uploads under way (bytes sent of the total, rate, time left), read from the daemon's
/status.json, in text and in --json; without an answer it shows none and says nothing false."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from deepva_watch.config import load_config
from deepva_watch.flow.transfers import Transfers
from deepva_watch.ledger import SqliteLedger
from deepva_watch.listener import Listener
from deepva_watch.service.access import Access, TokenFile
from deepva_watch.service.health import Health
from deepva_watch.service.metrics import Metrics
from deepva_watch.service.page import StatusPage
from deepva_watch.service.status import Sources
from deepva_watch.service.web import web_app
from tests.commands.conftest import CliResult
from tests.conftest import free_port, write_config

Cli = Callable[..., CliResult]


def test_status_shows_running_uploads_from_the_daemon(tmp_path: Path, cli: Cli) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    port = free_port()
    config_path = write_config(tmp_path, "http://127.0.0.1:9/api/v1", [watch],
                               metrics={"listen": f"127.0.0.1:{port}"})
    config = load_config(config_path)
    ledger = SqliteLedger(config.ledger)
    transfers = Transfers()
    health = Health(api_failure_seconds=60, folder_statuses=lambda: [], ledger_problem=lambda: None)
    sources = Sources(ledger=ledger, config=lambda: config, folders=lambda: [], uploads=transfers.running,
                      health=health)
    app = web_app(Metrics(ledger_counts=dict, folder_statuses=lambda: []), health,
                  StatusPage(sources, Access(TokenFile(lambda: None))))
    server = Listener(f"127.0.0.1:{port}", app, name="metrics").start()
    try:
        transfer = transfers.start("dvw-" + "a" * 32, str(watch), "news/clip.mxf", 800_000_000)
        transfer.sent(200_000_000)
        document = cli("status", "-c", str(config_path), "--json").json()
        [upload] = document["uploads"]
        assert (upload["folder"], upload["path"], upload["sent"], upload["total"]) == (
            str(watch), "news/clip.mxf", 200_000_000, 800_000_000)
        assert upload["rate"] > 0 and upload["eta_seconds"] is not None and upload["eta_seconds"] >= 0
        text = cli("status", "-c", str(config_path)).out
        line: Any = next(line for line in text.splitlines() if "news/clip.mxf" in line)
        assert line.startswith(f"  {watch}/news/clip.mxf: 200.0 of 800.0 MB (25 %), ")
        assert "MB/s" in line and line.endswith(" left")
        transfers.finished(transfer)
        assert cli("status", "-c", str(config_path), "--json").json()["uploads"] == []
        assert "uploading:" not in cli("status", "-c", str(config_path)).out
    finally:
        server.stop()
        ledger.close()
    assert cli("status", "-c", str(config_path), "--json").json()["uploads"] is None  # nobody answers
