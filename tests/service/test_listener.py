"""Every listener is bounded: idle connections cost no thread and are closed, clients that hang up leave no traceback,
a body over the limit is refused before it is read."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from structlog.testing import capture_logs

from deepva_watch.config import WebhookConfig
from deepva_watch.deepva.webhook import MAX_BODY_BYTES, WebhookReceiver
from deepva_watch.listener import Listener


def _hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def _get(address: tuple[str, int], timeout: float = 5) -> int:
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.fixture
def listener() -> Iterable[Listener]:
    served = Listener("127.0.0.1:0", _hello, name="test", max_connections=50, idle_seconds=1).start()
    yield served
    served.stop()


def test_idle_connections_cost_no_thread_and_are_closed(listener: Listener) -> None:
    threads_before = threading.active_count()
    idle = [socket.create_connection(listener.address) for _ in range(120)]
    try:
        time.sleep(0.5)
        assert threading.active_count() <= threads_before + 1, "a thread per connection"
        time.sleep(1.5)  # past the idle limit: the first ones are closed and the rest get their turn
        assert _get(listener.address, timeout=15) == 200
    finally:
        for connection in idle:
            connection.close()


def test_a_client_that_hangs_up_leaves_no_traceback(listener: Listener, capsys: pytest.CaptureFixture[str]) -> None:
    with capture_logs():
        for partial in (b"GET / HTTP/1.1\r\nHost: x\r\n", b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nab", b"\x16\x03"):
            connection = socket.create_connection(listener.address)
            connection.sendall(partial)
            connection.close()
        time.sleep(0.5)
        assert _get(listener.address) == 200
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out


def test_the_webhook_body_is_capped_small_before_the_signature_is_read() -> None:
    config = WebhookConfig(listen="127.0.0.1:0", callback_url="https://watch.example/hook", secret_file=None)
    calls: list[tuple[str, str]] = []
    receiver = WebhookReceiver(config, "secret-123456", lambda nonce: True, lambda job, state: calls.append((job, state)))
    receiver.start()
    try:
        assert MAX_BODY_BYTES <= 64 * 1024
        connection = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=5)
        connection.putrequest("POST", "/hook")
        connection.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        connection.endheaders()  # nothing follows: the answer must not wait for the body
        assert connection.getresponse().status == 413
        connection.close()
    finally:
        receiver.stop()
    assert calls == []


def test_a_listener_binds_when_made_so_a_port_in_use_fails_at_once(listener: Listener) -> None:
    with pytest.raises(OSError):
        Listener(f"127.0.0.1:{listener.address[1]}", _hello, name="second")
