"""The daemon as a service: systemd notifications, the watchdog, reloads, stops, metrics and health."""

from __future__ import annotations

import dataclasses
import shutil
import signal
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from deepva_watch import daemon as daemon_module
from deepva_watch.config import load_config
from deepva_watch.deepva import DeepVAClient
from deepva_watch.service.notify import Notifier
from deepva_watch.stages import STAGES
from tests.conftest import API_KEY, FIXTURES, free_port, ledger_rows, wait_for, write_config


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    messages: list[str] = []
    stop = threading.Event()

    def receive() -> None:
        while not stop.is_set():
            try:
                messages.append(sock.recv(4096).decode())
            except socket.timeout:
                continue
            except OSError:
                return

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    yield str(path), messages
    stop.set()
    thread.join(2)
    sock.close()


def _first(messages: list[str], needle: str) -> int:
    return next(index for index, message in enumerate(messages) if needle in message.splitlines())


def test_notify_messages_arrive_in_order_through_reload_and_stop(tmp_path, emulator, daemon_factory, notify_socket):
    path, messages = notify_socket
    watch = tmp_path / "watch"
    watch.mkdir()
    config = write_config(tmp_path, emulator.base_url, [watch])
    daemon = daemon_factory(config, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    wait_for(lambda: any("READY=1" in m.splitlines() for m in messages), 30, "READY=1")
    wait_for(lambda: sum("WATCHDOG=1" in m.splitlines() for m in messages) >= 2, 10, "two watchdog pings")
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: any("RELOADING=1" in m.splitlines() for m in messages), 10, "RELOADING=1")
    wait_for(lambda: sum("READY=1" in m.splitlines() for m in messages) >= 2, 10, "READY=1 after the reload")
    assert daemon.stop() == 0
    ready, reloading = _first(messages, "READY=1"), _first(messages, "RELOADING=1")
    ready_again = next(i for i, m in enumerate(messages) if "READY=1" in m.splitlines() and i > reloading)
    stopping = _first(messages, "STOPPING=1")
    assert ready < _first(messages, "WATCHDOG=1") < reloading < ready_again < stopping
    assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in messages[ready:])
    assert any("MONOTONIC_USEC=" in m for m in messages if "RELOADING=1" in m)


def test_the_watchdog_goes_quiet_when_a_worker_hangs(tmp_path, emulator, notify_socket, monkeypatch):
    path, messages = notify_socket
    release = threading.Event()
    hanging = threading.Event()

    def hang(services, asset):
        hanging.set()
        release.wait(30)
        return STAGES[0].step(services, asset)

    stages = (dataclasses.replace(STAGES[0], step=hang), *STAGES[1:])
    monkeypatch.setattr(daemon_module, "STAGES", stages)
    monkeypatch.setattr(daemon_module, "STUCK_WORKER_SECONDS", 1.0)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    watch = tmp_path / "watch"
    watch.mkdir()
    config = load_config(write_config(tmp_path, emulator.base_url, [watch]))
    daemon = daemon_module.Daemon(config, DeepVAClient(emulator.base_url, API_KEY),
                                  notifier=Notifier({"NOTIFY_SOCKET": path}))
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        wait_for(lambda: sum("WATCHDOG=1" in m.splitlines() for m in messages) >= 2, 10, "pings while healthy")
        shutil.copy(FIXTURES / "sample.jpg", watch / "a.jpg")
        assert hanging.wait(10)
        time.sleep(1.5)  # the step has now made no progress for longer than the limit
        pings = sum("WATCHDOG=1" in m.splitlines() for m in messages)
        time.sleep(1.0)  # 2.5 ping periods
        assert sum("WATCHDOG=1" in m.splitlines() for m in messages) == pings, "pings must stop for a hung worker"
        assert daemon.stuck_workers() == ["settle-0"]
    finally:
        release.set()
        daemon.request_stop()
        runner.join(30)


def test_sighup_adds_a_folder_without_a_restart_and_a_bad_reload_is_refused(tmp_path, emulator, daemon_factory):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    config_path = write_config(tmp_path, emulator.base_url, [first])
    daemon = daemon_factory(config_path)
    wait_for(lambda: '"event": "watching"' in daemon.log_text(), 20, "the daemon to watch its folder")

    data = yaml.safe_load(config_path.read_text())
    data["folders"].append({**data["folders"][0], "path": str(second)})
    config_path.write_text(yaml.safe_dump(data))
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: '"event": "reloaded"' in daemon.log_text(), 20, "the reload")
    shutil.copy(FIXTURES / "sample.jpg", second / "new-folder.jpg")
    wait_for(lambda: [r for r in ledger_rows(tmp_path / "ledger.sqlite3") if r["state"] == "published"], 60,
             "a file in the added folder to be published")

    data["folders"][0]["modules"] = "face_recognition"  # not a mapping: the whole reload must be refused
    config_path.write_text(yaml.safe_dump(data))
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: '"event": "reload_refused"' in daemon.log_text(), 20, "the refusal")
    assert "folders[0].modules: expected a mapping" in daemon.log_text()
    shutil.copy(FIXTURES / "sample.png", first / "still-working.png")
    wait_for(lambda: len([r for r in ledger_rows(tmp_path / "ledger.sqlite3") if r["state"] == "published"]) == 2,
             60, "the old configuration to keep working")
    assert daemon.process.poll() is None
    assert daemon.stop() == 0


def test_sigusr1_writes_every_thread_stack_to_stderr_and_the_daemon_carries_on(tmp_path, emulator, daemon_factory):
    """What an operator needs to explain a daemon that stopped moving, before restarting it."""
    watch = tmp_path / "watch"
    watch.mkdir()
    ledger = tmp_path / "ledger.sqlite3"
    daemon = daemon_factory(write_config(tmp_path, emulator.base_url, [watch]))
    shutil.copy(FIXTURES / "sample.jpg", watch / "before-dump.jpg")
    wait_for(lambda: [r for r in ledger_rows(ledger) if r["state"] == "published"], 60, "the first file")

    daemon.process.send_signal(signal.SIGUSR1)
    markers = ("in run_forever", "deepva_watch/daemon.py")  # the stage workers' stacks and the main loop's
    wait_for(lambda: all(marker in daemon.log_text() for marker in markers), 10, f"a stack dump showing {markers}")
    assert daemon.log_text().count("Current thread") == 1
    shutil.copy(FIXTURES / "sample.jpg", watch / "after-dump.jpg")
    wait_for(lambda: len([r for r in ledger_rows(ledger) if r["state"] == "published"]) == 2, 60,
             "a file dropped after the dump to be published")
    assert daemon.stop() == 0


def test_a_stop_lets_a_publish_in_flight_finish(tmp_path, make_emulator, daemon_factory):
    """SIGTERM while sidecars are being written: the step in flight finishes and is committed, not cut off."""
    emulator = make_emulator(processing_time=0)
    watch = tmp_path / "watch"
    watch.mkdir()
    ledger = tmp_path / "ledger.sqlite3"
    daemon = daemon_factory(write_config(tmp_path, emulator.base_url, [watch]))
    emulator.set_faults(latency={"GET /api/v1/jobs/{id}/detailed-results/": 2})
    shutil.copy(FIXTURES / "sample.jpg", watch / "in-flight.jpg")
    wait_for(lambda: emulator.stats()["faults_injected"].get("latency", 0) >= 1, 30, "the results fetch to be held")
    assert daemon.stop(signal.SIGTERM, timeout=40) == 0
    (row,) = ledger_rows(ledger)
    assert row["state"] == "published", (row["state"], row["last_error"])


def test_sigterm_during_an_upload_leaves_the_ledger_consistent_and_a_restart_finishes(tmp_path, make_emulator,
                                                                                      daemon_factory):
    emulator = make_emulator(processing_time=0.2)
    watch = tmp_path / "watch"
    watch.mkdir()
    # a 3 MB file through a 4 Mbit/s cap: the upload takes about 6 s, so the stop lands in the middle of it
    config = write_config(tmp_path, emulator.base_url, [watch], max_upload_mbps=4)
    ledger = tmp_path / "ledger.sqlite3"
    first = daemon_factory(config)
    (watch / "big.jpg").write_bytes((FIXTURES / "sample.jpg").read_bytes() + bytes(3_000_000))
    wait_for(lambda: [r for r in ledger_rows(ledger) if r["state"] == "uploading"], 30, "the upload to start")
    started = time.monotonic()
    assert first.stop(signal.SIGTERM, timeout=40) == 0
    assert time.monotonic() - started < daemon_module.STOP_DEADLINE_SECONDS + 5, "the stop has a deadline"
    conn = sqlite3.connect(ledger)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    (row,) = ledger_rows(ledger)
    assert row["state"] in ("uploading", "uploaded", "submitted"), row["state"]

    second = daemon_factory(config)
    wait_for(lambda: [r for r in ledger_rows(ledger) if r["state"] == "published"], 60, "the restart to finish it")
    assert emulator.stats()["jobs_created"] == 1
    assert second.stop() == 0


def test_metrics_and_health_endpoints(tmp_path, emulator, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    port = free_port()
    daemon = daemon_factory(write_config(tmp_path, emulator.base_url, [watch], metrics={"listen": f"127.0.0.1:{port}"}))
    shutil.copy(FIXTURES / "sample.jpg", watch / "a.jpg")
    wait_for(lambda: [r for r in ledger_rows(tmp_path / "ledger.sqlite3") if r["state"] == "published"], 60, "publish")
    text = wait_for(lambda: _get(f"http://127.0.0.1:{port}/metrics"), 10, "metrics")[1]
    families = {family.name: family for family in text_string_to_metric_families(text)}
    published = [s for s in families["deepva_watch_assets"].samples if s.labels.get("state") == "published"]
    assert published and published[0].value == 1
    assert sum(s.value for s in families["deepva_watch_uploaded_bytes"].samples if s.name.endswith("_total")) == \
        (watch / "a.jpg").stat().st_size
    routes = {s.labels["route"] for s in families["deepva_watch_api_requests"].samples if "route" in s.labels}
    assert {"/storage/", "/jobs/", "/jobs/{id}/detailed-results/"} <= routes
    status, body = _get(f"http://127.0.0.1:{port}/healthz")
    assert status == 200, body
    daemon.stop()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""




def test_an_unexpected_error_in_a_reload_leaves_the_daemon_running(tmp_path, emulator, monkeypatch):
    watch = tmp_path / "watch"
    watch.mkdir()
    config_path = write_config(tmp_path, emulator.base_url, [watch])
    daemon = daemon_module.Daemon(load_config(config_path), DeepVAClient(emulator.base_url, API_KEY),
                                  config_path=config_path, notifier=Notifier({}))

    def broken_apply(loaded):
        raise RuntimeError("a bug in applying the new config")

    monkeypatch.setattr(daemon, "_apply", broken_apply)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    try:
        assert daemon.ready.wait(20)
        daemon.request_reload()
        time.sleep(1.5)  # a few main-loop ticks
        assert runner.is_alive(), "the daemon must survive a failed reload"
        shutil.copy(FIXTURES / "sample.jpg", watch / "after-reload.jpg")
        wait_for(lambda: [r for r in ledger_rows(tmp_path / "ledger.sqlite3") if r["state"] == "published"], 60,
                 "work to go on after the failed reload")
    finally:
        daemon.request_stop()
        runner.join(30)
