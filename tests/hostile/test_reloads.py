"""Reloads apply whole or not at all: secrets are read again, a new address binds before the old one closes, and a
refused reload leaves the running receiver exactly as it was. The daemon runs in-process against the emulator."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from deepva_watch.config import load_config
from deepva_watch.daemon import Daemon
from deepva_watch.deepva import DeepVAClient
from deepva_watch.deepva.webhook import sign
from deepva_watch.service.notify import Notifier
from tests.conftest import API_KEY, free_port, wait_for, write_config
from tests.test_webhook import delivery

OLD_SECRET, NEW_SECRET = "whsec-old-1111", "whsec-new-2222"


class Running:
    def __init__(self, tmp_path: Path, emulator: Any, listen: str) -> None:
        watch = tmp_path / "watch"
        watch.mkdir()
        self.secret_file = tmp_path / "webhook-secret"
        self.secret_file.write_text(OLD_SECRET)
        self.config_path = write_config(tmp_path, emulator.base_url, [watch], webhook={
            "listen": listen, "callback_url": "http://127.0.0.1/hook", "secret_file": str(self.secret_file)})
        self.daemon = Daemon(load_config(self.config_path), DeepVAClient(emulator.base_url, API_KEY),
                             config_path=self.config_path, notifier=Notifier({}))
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)
        self.nonce = 0

    def edit(self, **webhook: Any) -> None:
        data = yaml.safe_load(self.config_path.read_text())
        data["webhook"].update(webhook)
        self.config_path.write_text(yaml.safe_dump(data))

    def deliver(self, listen: str, secret: str) -> int | None:
        """The HTTP status of one signed delivery to ``listen``; None when nothing listens there."""
        self.nonce += 1
        body = delivery()
        host, _, port = listen.rpartition(":")
        try:
            answer = requests.post(f"http://{host}:{port}/hook", data=body, timeout=5, headers={
                "X-DeepVA-Signature": sign(secret, body), "X-DeepVA-Nonce": str(self.nonce)})
        except requests.ConnectionError:
            return None
        return answer.status_code


@pytest.fixture
def running(tmp_path: Path, emulator: Any) -> Iterator[Running]:
    listen = f"127.0.0.1:{free_port()}"
    daemon = Running(tmp_path, emulator, listen)
    daemon.thread.start()
    wait_for(daemon.daemon.ready.is_set, 20, "the daemon to start")
    try:
        yield daemon
    finally:
        daemon.daemon.request_stop()
        daemon.thread.join(30)


def test_a_new_secret_in_the_same_file_is_in_force_after_a_reload(running: Running) -> None:
    listen = running.daemon.config.webhook.listen or ""
    assert running.deliver(listen, OLD_SECRET) == 200
    running.secret_file.write_text(NEW_SECRET)

    assert running.daemon.reload() is True

    assert running.deliver(listen, NEW_SECRET) == 200
    assert running.deliver(listen, OLD_SECRET) == 401, "the old secret must stop being valid"


def test_a_reload_whose_port_is_taken_is_refused_and_the_receiver_keeps_serving(running: Running) -> None:
    listen = running.daemon.config.webhook.listen or ""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        running.edit(listen=f"127.0.0.1:{taken.getsockname()[1]}")
        running.secret_file.write_text(NEW_SECRET)

        assert running.daemon.reload() is False

        assert running.deliver(listen, OLD_SECRET) == 200, "a refused reload changes nothing, not even the secret"
        assert running.daemon.config.webhook.listen == listen
    finally:
        taken.close()


def test_a_new_address_serves_before_the_old_one_closes(running: Running) -> None:
    old = running.daemon.config.webhook.listen or ""
    new = f"127.0.0.1:{free_port()}"
    running.edit(listen=new)

    assert running.daemon.reload() is True

    assert running.deliver(new, OLD_SECRET) == 200
    assert running.deliver(old, OLD_SECRET) is None


def test_an_ipv6_listen_address_works(tmp_path: Path, emulator: Any) -> None:
    listen = f"[::1]:{free_port()}"
    daemon = Running(tmp_path, emulator, listen)
    daemon.thread.start()
    try:
        wait_for(daemon.daemon.ready.is_set, 20, "the daemon to start")
        assert daemon.deliver(listen, OLD_SECRET) == 200
    finally:
        daemon.daemon.request_stop()
        daemon.thread.join(30)
