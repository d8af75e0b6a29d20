"""Events alone find new files, and events that go deaf are noticed: the reconcile interval is set far beyond each
test's length wherever only events may find a file."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from deepva_watch import daemon as daemon_module
from deepva_watch.config import load_config
from deepva_watch.deepva import DeepVAClient
from deepva_watch.service.notify import Notifier
from deepva_watch.watch import supervisor
from tests.conftest import API_KEY, FIXTURES, free_port, ledger_rows, wait_for, write_config

EVENTS_ONLY = {"watch": "events", "rescan_interval_seconds": 3600}


def _published(ledger: Path, relpath: str) -> bool:
    return any(row["relpath"] == relpath and row["state"] == "published" for row in ledger_rows(ledger))


def _scan_reasons(log_text: str) -> list[str]:
    reasons = []
    for line in log_text.splitlines():
        if line.startswith("{") and '"event": "scanned"' in line:
            reasons.append(json.loads(line)["why"])
    return reasons


def test_a_file_copied_in_is_published_by_events_alone(tmp_path, emulator, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    daemon = daemon_factory(write_config(tmp_path, emulator.base_url, [watch], folder=EVENTS_ONLY))
    wait_for(lambda: '"event": "scanned"' in daemon.log_text(), 20, "the daemon to watch the folder")
    shutil.copy(FIXTURES / "sample.jpg", watch / "arrived.jpg")
    wait_for(lambda: _published(tmp_path / "ledger.sqlite3", "arrived.jpg"), 10, "the file published")
    assert daemon.stop() == 0
    assert all("periodic" not in why for why in _scan_reasons(daemon.log_text())), "no reconcile found it"
    assert '"events_missed"' not in daemon.log_text()


def test_a_file_three_folders_deep_in_ten_thousand_folders_is_published_by_events(tmp_path, emulator, daemon_factory):
    watch = tmp_path / "watch"
    for first in range(10):
        for second in range(10):
            for third in range(100):
                (watch / f"l{first}" / f"m{second}" / f"n{third:02}").mkdir(parents=True)
    daemon = daemon_factory(write_config(tmp_path, emulator.base_url, [watch], folder=EVENTS_ONLY))
    scanned = wait_for(lambda: [line for line in daemon.log_text().splitlines() if '"event": "scanned"' in line],
                       60, "the daemon to watch the tree")
    assert json.loads(scanned[0])["folders"] == 10_111
    shutil.copy(FIXTURES / "sample.jpg", watch / "l3" / "m7" / "n42" / "deep.jpg")
    wait_for(lambda: _published(tmp_path / "ledger.sqlite3", "l3/m7/n42/deep.jpg"), 15, "the deep file published")
    assert daemon.stop() == 0
    text = daemon.log_text()
    assert '"mode": "events"' in text and '"inotify_watch_limit"' not in text
    assert all("periodic" not in why for why in _scan_reasons(text))


class _DeafObserver:
    def stop(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        pass


def _deaf(path: str, handler: Any, **options: Any) -> _DeafObserver:
    return _DeafObserver()


def test_deaf_events_are_caught_by_the_next_reconcile_and_the_file_is_published(tmp_path, emulator, monkeypatch):
    monkeypatch.setattr(supervisor, "MISSED_EVENT_GRACE_SECONDS", 0.5)
    watch = tmp_path / "watch"
    watch.mkdir()
    port = free_port()
    config = load_config(write_config(tmp_path, emulator.base_url, [watch], metrics={"listen": f"127.0.0.1:{port}"},
                                      folder={"watch": "events", "rescan_interval_seconds": 2}))
    daemon = daemon_module.Daemon(config, DeepVAClient(emulator.base_url, API_KEY), notifier=Notifier({}),
                                  observer_factory=_deaf)
    runner = threading.Thread(target=daemon.run, daemon=True)
    with capture_logs() as logs:
        runner.start()
        try:
            assert daemon.ready.wait(20)
            wait_for(lambda: all(w.scanned.is_set() for w in daemon.watches.values()), 20, "the first scan")
            shutil.copy(FIXTURES / "sample.jpg", watch / "unheard.jpg")
            wait_for(lambda: _published(tmp_path / "ledger.sqlite3", "unheard.jpg"), 20, "the file published")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                health = json.loads(response.read())
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                metrics = response.read().decode()
        finally:
            daemon.request_stop()
            runner.join(30)
    error = next(entry for entry in logs if entry["event"] == "events_missed")
    assert error["log_level"] == "error" and error["files"] == 1 and error["examples"] == ["unheard.jpg"]
    assert health["status"] == "degraded" and health["warnings"][0].startswith(f"folder {watch}: events stopped")
    families = {family.name: family for family in text_string_to_metric_families(metrics)}
    (missed,) = [s for s in families["deepva_watch_events_missed"].samples if s.name.endswith("_total")]
    assert missed.labels == {"folder": str(watch), "node": socket.gethostname()} and missed.value == 1
    assert daemon.folder_statuses()[0].mode == "poll"
