"""The emulator reads requests with the standard library's parser: keep-alive as HTTP says, the standard limits on
header blocks, clear refusals of broken requests, and ``Expect: 100-continue``."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

from deepva_watch.emulator import Emulator

from .conftest import API_KEY


def _connect(emulator: Emulator) -> socket.socket:
    address = urlsplit(emulator.base_url)
    assert address.hostname is not None and address.port is not None
    return socket.create_connection((address.hostname, address.port), timeout=10)


def _exchange(emulator: Emulator, raw: bytes) -> tuple[bytes, bool]:
    """Send ``raw`` on a fresh connection; the first response, and whether the server closed the connection after it."""
    with _connect(emulator) as connection:
        connection.sendall(raw)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(65536)
            assert chunk, f"closed without a complete response: {received!r}"
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += connection.recv(65536)
        connection.settimeout(0.5)  # a server that closes does so right after its answer
        try:
            closed = connection.recv(1) == b""
        except TimeoutError:
            closed = False
        return head + b"\r\n\r\n" + body, closed


def _until_closed(emulator: Emulator, raw: bytes) -> bytes:
    """Send ``raw``; everything the server sends before it closes the connection (which it must do)."""
    with _connect(emulator) as connection:
        connection.sendall(raw)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        return received


def test_requests_are_answered_and_connections_kept_alive_as_http_says(emulator: Emulator) -> None:
    path = urlsplit(emulator.base_url).path + "/jobs/"
    key = f"Authorization: Key {API_KEY}\r\n".encode()
    response, closed = _exchange(emulator, f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode() + key + b"\r\n")
    assert response.startswith(b"HTTP/1.1 200") and not closed
    response, closed = _exchange(emulator, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode() + key + b"\r\n")
    assert response.startswith(b"HTTP/1.1 200") and closed
    response, closed = _exchange(emulator, f"GET {path} HTTP/1.0\r\n".encode() + key + b"\r\n")
    assert response.startswith(b"HTTP/1.1 200") and closed
    response, closed = _exchange(emulator, f"GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n".encode() + key + b"\r\n")
    assert response.startswith(b"HTTP/1.1 200") and not closed


def test_header_names_are_case_insensitive(emulator: Emulator) -> None:
    path = urlsplit(emulator.base_url).path + "/jobs/"
    request = f"GET {path} HTTP/1.1\r\nhost: x\r\naUTHORIZATION:  Key {API_KEY}\r\n\r\n"
    response, _ = _exchange(emulator, request.encode())
    assert response.startswith(b"HTTP/1.1 200"), response[:200]


@pytest.mark.parametrize("headers", [
    b"".join(b"X-%d: v\r\n" % number for number in range(101)),
    b"X-Big: " + b"a" * 65536 + b"\r\n",
], ids=["too many", "too long"])
def test_header_blocks_past_the_standard_limits_are_refused_with_431(emulator: Emulator, headers: bytes) -> None:
    response, closed = _exchange(emulator, b"GET /api/v1/jobs/ HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert response.startswith(b"HTTP/1.1 431"), response[:200]
    assert closed


@pytest.mark.parametrize("raw, status", [
    (b"GET /api/v1/jobs/ HTTX/1.1\r\nHost: x\r\n\r\n", b"400"),
    (b"GET /api/v1/jobs/ HTTP/1.1 more\r\nHost: x\r\n\r\n", b"400"),
    (b"GET /api/v1/jobs/ HTTP/2.0\r\nHost: x\r\n\r\n", b"505"),
])
def test_broken_request_lines_are_refused_and_the_connection_closed(emulator: Emulator, raw: bytes,
                                                                   status: bytes) -> None:
    """The standard handler refuses before it knows the request's version, so the refusal is its error page alone."""
    assert b"Error code: " + status in _until_closed(emulator, raw)


def test_expect_100_continue_is_honoured(emulator: Emulator) -> None:
    address = urlsplit(emulator.base_url)
    with _connect(emulator) as connection:
        connection.sendall(f"POST {address.path}/jobs/ HTTP/1.1\r\nHost: x\r\nAuthorization: Key {API_KEY}\r\n"
                           "Content-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n".encode())
        assert connection.recv(65536).startswith(b"HTTP/1.1 100")
