"""sd_notify messages as systemd would receive them: on a real datagram socket, in order."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from deepva_watch.service.notify import Notifier, Watchdog, stale_workers, status_text, watchdog_interval


class Receiver:
    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address

    def messages(self) -> list[dict[str, str]]:
        received = []
        self.sock.setblocking(False)
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return received
            received.append(dict(line.split("=", 1) for line in data.decode().split("\n")))


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    yield Receiver(sock, str(path))
    sock.close()


def test_the_lifecycle_reaches_systemd_in_order(receiver: Receiver) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": receiver.address})
    assert notifier.enabled
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.ready("3 waiting,\n0 failed")
    notifier.status("1 waiting")
    notifier.watchdog()
    notifier.reloading()
    notifier.reloaded("reloaded")
    notifier.stopping("stopping")
    notifier.close()

    messages = receiver.messages()
    assert messages == [
        {"READY": "1", "STATUS": "3 waiting, 0 failed"},  # a newline would end the STATUS line: flattened
        {"STATUS": "1 waiting"},
        {"WATCHDOG": "1"},
        {"RELOADING": "1", "MONOTONIC_USEC": messages[3]["MONOTONIC_USEC"]},
        {"READY": "1", "STATUS": "reloaded"},
        {"STOPPING": "1", "STATUS": "stopping"},
    ]
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before <= int(messages[3]["MONOTONIC_USEC"]) <= now


def test_an_abstract_socket_is_addressed_by_a_leading_at() -> None:
    name = f"deepva-watch-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


def test_without_notify_socket_everything_is_a_quiet_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False and notifier.stopping() is False


def test_a_vanished_socket_is_not_fatal(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert notifier.ready() is False
    assert notifier.status("still fine") is False


def test_watchdog_interval_comes_from_the_environment_and_belongs_to_one_pid() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 60.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=4242) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def test_watchdog_pings_at_half_the_interval_and_stops_while_a_worker_hangs(receiver: Receiver) -> None:
    now = [100.0]
    watchdog = Watchdog(Notifier({"NOTIFY_SOCKET": receiver.address}), 10.0, clock=lambda: now[0])
    sent = []
    for step in range(12):  # 12 ticks a second apart: workers fine for 6 s, then one hangs
        now[0] = 100.0 + step
        heartbeats = {"upload-0": now[0], "track-0": now[0] if step < 6 else 105.0}
        stuck = stale_workers(heartbeats, now[0], limit=3.0)
        sent.append(watchdog.tick(workers_alive=not stuck))
    assert sent == [True, False, False, False, False, True, False, False, False, False, False, False]
    assert watchdog.withheld_since == 109.0  # track-0 last beat at 105; stale once more than 3 s old
    assert receiver.messages() == [{"WATCHDOG": "1"}, {"WATCHDOG": "1"}]


def test_watchdog_without_interval_never_pings(receiver: Receiver) -> None:
    watchdog = Watchdog(Notifier({"NOTIFY_SOCKET": receiver.address}), None)
    assert watchdog.tick(True) is False
    assert receiver.messages() == []


def test_status_text_summarises_the_ledger() -> None:
    text = status_text({"settling": 2, "accepted": 1, "uploading": 1, "submitted": 3, "published": 10, "failed": 1})
    assert text == "3 waiting, 1 in progress, 3 at DeepVA, 10 published, 1 failed"
