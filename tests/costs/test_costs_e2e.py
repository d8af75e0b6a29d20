"""Never pay twice, end to end: the daemon as a real process, the emulator over HTTP counting every job."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import FIXTURES, free_port, ledger_rows, wait_for, write_config


def _latest(ledger: Path) -> dict[str, dict[str, Any]]:
    return {row["relpath"]: row for row in sorted(ledger_rows(ledger), key=lambda row: row["id"])}


def _states(ledger: Path) -> dict[str, str]:
    return {path: row["state"] for path, row in _latest(ledger).items()}


def _health(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return dict(json.load(response))
    except urllib.error.HTTPError as error:
        return dict(json.load(error))


def test_existing_files_are_skipped_across_restarts_and_new_ones_processed(tmp_path, emulator, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    for name in ("archive-1.jpg", "archive-2.png", "archive-3.mp4"):
        shutil.copy(FIXTURES / ("sample" + Path(name).suffix), watch / name)
    ledger = tmp_path / "ledger.sqlite3"
    config = write_config(tmp_path, emulator.base_url, [watch], folder={"existing": "skip"})
    first = daemon_factory(config)
    wait_for(lambda: '"event": "existing_skipped"' in first.log_text(), 20, "the first scan")
    shutil.copy(FIXTURES / "sample.jpg", watch / "arrived.jpg")
    wait_for(lambda: _states(ledger).get("arrived.jpg") == "published", 60, "the new file")
    assert first.stop() == 0

    second = daemon_factory(config)
    shutil.copy(FIXTURES / "sample.png", watch / "arrived-later.png")
    wait_for(lambda: _states(ledger).get("arrived-later.png") == "published", 60, "a file after the restart")
    assert second.stop() == 0

    assert _states(ledger) == {"archive-1.jpg": "skipped", "archive-2.png": "skipped", "archive-3.mp4": "skipped",
                               "arrived.jpg": "published", "arrived-later.png": "published"}
    assert emulator.stats()["jobs_created"] == 2
    assert not (watch / "archive-1.jpg.xmp").exists()


def test_a_lost_ledger_adopts_the_sidecars_and_pays_only_for_what_changed(tmp_path, emulator, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    media = {"still.jpg": "sample.jpg", "graphic.png": "sample.png", "clip.mp4": "sample.mp4"}
    for name, fixture in media.items():
        shutil.copy(FIXTURES / fixture, watch / name)
    ledger = tmp_path / "ledger.sqlite3"
    config = write_config(tmp_path, emulator.base_url, [watch])
    first = daemon_factory(config)
    wait_for(lambda: set(_states(ledger).values()) == {"published"} and len(_states(ledger)) == 3, 90, "all three")
    jobs = {path: row["job_id"] for path, row in _latest(ledger).items()}
    assert first.stop() == 0
    for suffix in ("", "-wal", "-shm"):
        Path(str(ledger) + suffix).unlink(missing_ok=True)
    shutil.copy(FIXTURES / "portrait.jpg", watch / "still.jpg")  # replaced since its sidecars were written
    sidecars_before = {path.name: path.read_bytes() for path in watch.iterdir() if path.name.endswith(".json")}

    second = daemon_factory(config)
    wait_for(lambda: len(_states(ledger)) == 3 and set(_states(ledger).values()) == {"published"}, 90, "all again")
    assert second.stop() == 0

    latest = _latest(ledger)
    assert latest["graphic.png"]["job_id"] == jobs["graphic.png"] and latest["clip.mp4"]["job_id"] == jobs["clip.mp4"]
    assert latest["still.jpg"]["job_id"] != jobs["still.jpg"]
    assert emulator.stats()["jobs_created"] == 4, "one new job: the file that changed"
    after = {path.name: path.read_bytes() for path in watch.iterdir() if path.name.endswith(".json")}
    assert after["graphic.png.deepva.json"] == sidecars_before["graphic.png.deepva.json"], "adopted sidecars stay"
    assert '"event": "adopted"' in second.log_text()


def test_at_the_daily_cap_work_waits_health_says_why_and_a_higher_cap_releases_it(tmp_path, emulator,
                                                                                  daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    port = free_port()
    ledger = tmp_path / "ledger.sqlite3"
    config = write_config(tmp_path, emulator.base_url, [watch], budget={"images_per_day": 2},
                          metrics={"listen": f"127.0.0.1:{port}"})
    daemon = daemon_factory(config)
    for index in range(3):
        shutil.copy(FIXTURES / "sample.jpg", watch / f"{index}.jpg")
    wait_for(lambda: sorted(_states(ledger).values()) == ["published", "published", "uploaded"], 60, "two of three")
    waiting = next(row for row in ledger_rows(ledger) if row["state"] == "uploaded")
    assert waiting["last_error"].startswith("budget reached until ") and waiting["attempts"] == 0
    health = _health(port)
    assert health["status"] == "degraded" and any("(2 images per day)" in text for text in health["warnings"])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        # every metric carries the node that serves it (its host name by default)
        assert f'deepva_watch_budget_spent{{kind="images",node="{socket.gethostname()}"}} 2.0' in response.read().decode()
    assert emulator.stats()["jobs_created"] == 2

    data = yaml.safe_load(config.read_text())
    data["budget"]["images_per_day"] = 5
    config.write_text(yaml.safe_dump(data))
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: sorted(_states(ledger).values()) == ["published"] * 3, 60, "the third after the reload")
    assert _health(port)["status"] == "ok"
    assert daemon.stop() == 0
    assert daemon.log_text().count('"event": "budget_reached"') == 1


def test_a_reload_that_nests_folders_is_refused(tmp_path, emulator, daemon_factory):
    watch = tmp_path / "watch"
    (watch / "inner").mkdir(parents=True)
    config = write_config(tmp_path, emulator.base_url, [watch])
    daemon = daemon_factory(config)
    wait_for(lambda: '"event": "watching"' in daemon.log_text(), 20, "the daemon to watch")
    data = yaml.safe_load(config.read_text())
    data["folders"].append({**data["folders"][0], "path": str(watch / "inner")})
    config.write_text(yaml.safe_dump(data))
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: '"event": "reload_refused"' in daemon.log_text(), 20, "the refusal")
    assert "folders[1].path: inside folders[0].path" in daemon.log_text()
    shutil.copy(FIXTURES / "sample.jpg", watch / "inner" / "once.jpg")
    wait_for(lambda: _states(tmp_path / "ledger.sqlite3").get("inner/once.jpg") == "published", 60, "published once")
    assert emulator.stats()["jobs_created"] == 1 and len(ledger_rows(tmp_path / "ledger.sqlite3")) == 1
    assert daemon.stop() == 0
