"""The client reads response headers with our reader instead of the email parser, and everything that depends on them
(framing, keep-alive, the limits) still behaves as the standard library does."""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
from collections.abc import Iterator

import pytest
from deepva_scripted_server import API_KEY, Reply, job_json

from deepva_watch.deepva import DeepVAClient, RetryPolicy, TransportError, connections


class RawServer:
    """Answers every request on a loopback socket with the same bytes, as sent; counts connections and requests."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.connections = 0
        self.requests = 0
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}/api/v1"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as stream:
            while True:
                lines = iter(lambda: stream.readline(), b"")
                if not any(line in (b"\r\n", b"\n") for line in lines):  # request line and headers, then the blank
                    return
                self.requests += 1
                conn.sendall(self.answer)

    def close(self) -> None:
        self._socket.close()


@pytest.fixture
def raw_server() -> Iterator[list[RawServer]]:
    started: list[RawServer] = []
    yield started
    for server in started:
        server.close()


def _client(base_url: str) -> DeepVAClient:
    return DeepVAClient(base_url, API_KEY, timeout=(2.0, 5.0), retry=RetryPolicy(attempts=1), sleep=lambda _: None)


def test_responses_are_read_by_our_header_reader(server, make_client, monkeypatch) -> None:
    """If a later Python stops looking ``parse_headers`` up by name in ``HTTPResponse.begin``, this fails: the client
    would still work, on the slower standard parser."""
    read = []
    real = connections.read_headers

    def spy(stream, **options):
        read.append(options)
        return real(stream, **options)

    monkeypatch.setattr(connections, "read_headers", spy)
    server.script("GET", "/jobs/j1/", Reply(200, job_json("j1"), headers={"X-Request-Id": "abc"}))
    assert make_client().get_job("j1").id == "j1"
    assert read == [{"lenient": True}]


def test_odd_header_blocks_read_as_the_standard_parser_reads_them() -> None:
    block = (b"Content-Type: application/json\r\nX-Twice: 1\r\nx-twice: 2\r\nX-Folded: first\r\n second\r\n"
             b"Retry-After:   7  \r\nEmpty:\r\nnot a field line\r\nX-After: dropped\r\n\r\nbody")
    ours, theirs = io.BytesIO(block), io.BytesIO(block)
    mine, standard = connections.parse_response_headers(ours), http.client.parse_headers(theirs)
    assert ours.read() == theirs.read() == b"body"
    assert mine["content-type"] == standard["content-type"] == "application/json"
    assert mine.get_all("X-TWICE") == standard.get_all("X-TWICE") == ["1", "2"]
    assert mine["Retry-After"] == "7" and standard["Retry-After"].strip() == "7"
    assert mine["Empty"] == standard["Empty"] == ""
    assert mine["X-After"] is standard["X-After"] is None  # the fields end at a line that is none
    assert mine["X-Folded"] == "first second"  # obsolete folding: one space, as RFC 9112 asks of a reader
    assert mine.defects == [] and mine.get_payload() is None  # what urllib3 checks of every response's headers


def test_chunked_answers_and_kept_alive_connections_work_as_before(raw_server) -> None:
    body = json.dumps(job_json("j1")).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    server = RawServer(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                       b"Some junk line\r\n\r\n" + chunks)
    raw_server.append(server)
    client = _client(server.base_url)
    assert [client.get_job("j1").id for _ in range(3)] == ["j1", "j1", "j1"]
    assert server.requests == 3 and server.connections == 1


def test_a_connection_close_answer_is_not_reused(raw_server) -> None:
    body = json.dumps(job_json("j1")).encode()
    server = RawServer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    raw_server.append(server)
    client = _client(server.base_url)
    assert [client.get_job("j1").id for _ in range(2)] == ["j1", "j1"]
    assert server.connections == 2


@pytest.mark.parametrize("headers", [b"X-Many: 1\r\n" * 101, b"X-Long: " + b"a" * 70_000 + b"\r\n"],
                         ids=["too many", "too long"])
def test_the_standard_limits_hold(raw_server, headers) -> None:
    raw_server.append(server := RawServer(b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: 2\r\n\r\n{}"))
    with pytest.raises(TransportError):
        _client(server.base_url).get_job("j1")
