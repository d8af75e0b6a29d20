"""The emulator reads request headers itself (see deepva_watch/httpheaders.py): same answers as the standard
handler for what clients send, clear refusals for what they must not."""

from __future__ import annotations

import io
import socket
from http.client import LineTooLong
from urllib.parse import urlsplit

import pytest

from deepva_watch.emulator import Emulator
from deepva_watch.httpheaders import MAX_HEADERS, MAX_LINE, MalformedHeader, TooManyHeaders, read_headers

from .conftest import API_KEY


def test_fields_are_read_up_to_the_empty_line_and_the_body_stays_in_the_stream() -> None:
    stream = io.BytesIO(b"Host: x\r\ncontent-TYPE:  multipart/form-data; boundary=abc \r\nX-Tag: 1\r\nX-Tag: 2\r\n"
                        b"\r\nbody bytes")
    headers = read_headers(stream)
    assert headers["Content-Type"] == "multipart/form-data; boundary=abc"
    assert headers.get_all("x-tag") == ["1", "2"]
    assert headers.get("Missing", "default") == "default"
    assert stream.read() == b"body bytes"


def test_a_folded_line_continues_the_field_before_it() -> None:
    headers = read_headers(io.BytesIO(b"X-Long: first\r\n  second\r\n\tthird\r\nHost: x\r\n\r\n"))
    assert headers["X-Long"] == "first second third"
    assert headers["Host"] == "x"


def test_bare_newlines_and_an_end_of_stream_also_end_the_block() -> None:
    assert read_headers(io.BytesIO(b"Host: x\n\nrest"))["Host"] == "x"
    assert read_headers(io.BytesIO(b"Host: x\r\n"))["Host"] == "x"


@pytest.mark.parametrize("block", [b"no colon here\r\n\r\n", b" starts folded\r\n\r\n", b"Bad Name : v\r\n\r\n",
                                   b": no name\r\n\r\n"])
def test_lines_that_are_not_fields_are_refused(block: bytes) -> None:
    with pytest.raises(MalformedHeader):
        read_headers(io.BytesIO(block))


def test_the_standard_limits_hold() -> None:
    with pytest.raises(LineTooLong):
        read_headers(io.BytesIO(b"X-Big: " + b"a" * MAX_LINE + b"\r\n\r\n"))
    many = b"".join(b"X-%d: v\r\n" % number for number in range(MAX_HEADERS + 1)) + b"\r\n"
    with pytest.raises(TooManyHeaders):
        read_headers(io.BytesIO(many))
    assert len(read_headers(io.BytesIO(many[many.index(b"X-1:"):]))) == MAX_HEADERS


def _exchange(emulator: Emulator, raw: bytes) -> tuple[bytes, bool]:
    """Send ``raw`` on a fresh connection; the first response, and whether the server closed the connection after it."""
    address = urlsplit(emulator.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
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


@pytest.mark.parametrize("raw, status", [
    (b"GET /api/v1/jobs/ HTTP/1.1\r\nHost x\r\n\r\n", b"400"),
    (b"GET /api/v1/jobs/ HTTP/2.0\r\nHost: x\r\n\r\n", b"400"),
    (b"GET /api/v1/jobs/\r\n\r\n", b"400"),
    (b"GET /api/v1/jobs/ HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % n for n in range(MAX_HEADERS + 1)) + b"\r\n", b"431"),
])
def test_broken_requests_are_refused_with_a_status_and_the_connection_closed(emulator: Emulator, raw: bytes,
                                                                             status: bytes) -> None:
    response, closed = _exchange(emulator, raw)
    assert response.split(b" ")[1] == status, response[:200]
    assert closed


def test_expect_100_continue_is_honoured(emulator: Emulator) -> None:
    address = urlsplit(emulator.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(f"POST {address.path}/jobs/ HTTP/1.1\r\nHost: x\r\nAuthorization: Key {API_KEY}\r\n"
                           "Content-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n".encode())
        assert connection.recv(65536).startswith(b"HTTP/1.1 100")
