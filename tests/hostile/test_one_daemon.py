"""One daemon per ledger, and a ledger lost under a running daemon stops all work and turns health red."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import yaml

from tests.conftest import FIXTURES, free_port, ledger_rows, wait_for, write_config


def _deepva_watch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepva_watch", *args], capture_output=True, text=True, timeout=60)


def _health(port: int) -> dict[str, object]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return dict(json.load(response))
    except urllib.error.HTTPError as error:  # 503 carries the same JSON body
        return dict(json.load(error))


def test_a_second_run_on_the_same_ledger_is_refused_naming_the_holder(tmp_path, emulator, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    config = write_config(tmp_path, emulator.base_url, [watch])
    first = daemon_factory(config)
    wait_for(lambda: '"event": "watching"' in first.log_text(), 20, "the first daemon to watch")
    assert first.process is not None

    second = _deepva_watch("run", "-c", str(config))

    assert second.returncode == 2
    lines = [line for line in second.stderr.splitlines() if not line.startswith('{"note"')]  # permission warnings
    assert lines == [f"deepva-watch: ledger error: another deepva-watch (pid {first.process.pid}) is running on the "
                     f"ledger {tmp_path / 'ledger.sqlite3'}"], second.stderr
    status = _deepva_watch("status", "-c", str(config))  # read commands still work beside the running daemon
    assert status.returncode == 0, status.stderr
    shutil.copy(FIXTURES / "sample.jpg", watch / "a.jpg")  # and the first daemon goes on untouched
    wait_for(lambda: [row["state"] for row in ledger_rows(tmp_path / "ledger.sqlite3")] == ["published"], 60,
             "the first daemon to publish")
    assert first.stop() == 0
    after = daemon_factory(config)  # the lock goes with the process: the next start takes it
    wait_for(lambda: '"event": "watching"' in after.log_text(), 20, "a new daemon after the first stopped")


def test_a_ledger_removed_under_the_daemon_stops_all_work_and_turns_health_red(tmp_path, emulator, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    port = free_port()
    config = write_config(tmp_path, emulator.base_url, [watch], metrics={"listen": f"127.0.0.1:{port}"})
    daemon = daemon_factory(config)
    wait_for(lambda: '"listener": "metrics"' in daemon.log_text(), 20, "the daemon to watch and listen")
    assert _health(port)["status"] == "ok"
    ledger = tmp_path / "ledger.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        ledger.with_name(ledger.name + suffix).unlink(missing_ok=True)

    wait_for(lambda: '"event": "ledger_lost"' in daemon.log_text(), 10, "the daemon to notice")
    health = _health(port)
    assert health["status"] == "unhealthy"
    assert any("was removed while the daemon ran" in str(reason) for reason in health["reasons"])  # type: ignore[attr-defined]
    shutil.copy(FIXTURES / "sample.jpg", watch / "b.jpg")
    time.sleep(3)  # an absence: ten poll intervals and fifteen settle times in which nothing may happen
    assert emulator.stats()["jobs_created"] == 0 and emulator.stats()["uploads_completed"] == 0
    assert not (watch / "b.jpg.xmp").exists()
    assert daemon.stop() == 0


def test_a_ledger_that_cannot_be_opened_is_one_line_and_exit_2(tmp_path, emulator):
    watch = tmp_path / "watch"
    watch.mkdir()
    corrupt = tmp_path / "corrupt.sqlite3"
    corrupt.write_bytes(b"this is not a database" * 200)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for ledger, reason in ((corrupt, "file is not a database"), (blocker / "ledger.sqlite3", "a-file is not a directory")):
        config = write_config(tmp_path, emulator.base_url, [watch])
        data = yaml.safe_load(config.read_text())
        data["ledger"] = str(ledger)
        config.write_text(yaml.safe_dump(data))

        result = _deepva_watch("run", "-c", str(config))

        assert result.returncode == 2, result.stderr
        error_lines = [line for line in result.stderr.splitlines() if line.startswith("deepva-watch:")]
        assert len(error_lines) == 1 and reason in error_lines[0], result.stderr
        assert "Traceback" not in result.stderr
