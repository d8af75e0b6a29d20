"""The client's HTTP layer as seen from the wire: pooled and kept-alive connections, framing, the standard header
limits, proxies from the environment, and no state besides the key (no cookies kept, no credentials from ~/.netrc)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from deepva_scripted_server import API_KEY, Reply, job_json

from deepva_watch.deepva import DeepVAClient, RetryPolicy, TransportError
from tests.conftest import free_port

_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


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


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment without proxy settings, upper or lower case, for the test to add its own."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def _client(base_url: str, *, attempts: int = 1, read_timeout: float = 5.0) -> DeepVAClient:
    return DeepVAClient(base_url, API_KEY, timeout=(2.0, read_timeout), retry=RetryPolicy(attempts=attempts),
                        sleep=lambda _: None)


def test_chunked_answers_are_read_and_one_connection_serves_every_call(raw_server) -> None:
    body = json.dumps(job_json("j1")).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    server = RawServer(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                       + chunks)
    raw_server.append(server)
    with _client(server.base_url) as client:
        assert [client.get_job("j1").id for _ in range(3)] == ["j1", "j1", "j1"]
    assert server.requests == 3 and server.connections == 1


def test_a_connection_close_answer_is_not_reused(raw_server) -> None:
    body = json.dumps(job_json("j1")).encode()
    server = RawServer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    raw_server.append(server)
    with _client(server.base_url) as client:
        assert [client.get_job("j1").id for _ in range(2)] == ["j1", "j1"]
    assert server.connections == 2


def test_concurrent_workers_keep_their_connections_in_the_pool(raw_server) -> None:
    """More workers than requests' default pool of 10: every connection opened is kept and reused."""
    body = json.dumps(job_json("j1")).encode()
    server = RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    raw_server.append(server)
    workers, rounds = 16, 5
    barrier = threading.Barrier(workers)
    failures: list[BaseException] = []

    def work(client: DeepVAClient) -> None:
        try:
            for _ in range(rounds):
                barrier.wait(timeout=10)
                client.get_job("j1")
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)

    with _client(server.base_url) as client:
        threads = [threading.Thread(target=work, args=(client,)) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert failures == []
    assert server.requests == workers * rounds
    assert server.connections <= workers


@pytest.mark.parametrize("headers", [b"X-Many: 1\r\n" * 101, b"X-Long: " + b"a" * 70_000 + b"\r\n"],
                         ids=["too many", "too long"])
def test_answers_past_the_standard_header_limits_are_transport_errors(raw_server, headers) -> None:
    raw_server.append(server := RawServer(b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: 2\r\n\r\n{}"))
    with _client(server.base_url) as client, pytest.raises(TransportError) as caught:
        client.get_job("j1")
    assert caught.value.maybe_applied


def test_an_answer_with_contradicting_lengths_may_have_created_the_job(raw_server) -> None:
    """The request went out; only the answer's headers were unreadable, so the job is not created again."""
    raw_server.append(server := RawServer(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"))
    with _client(server.base_url, attempts=3) as client, pytest.raises(TransportError) as caught:
        client.create_job(["storage://a"], {}, tag="t")
    assert caught.value.maybe_applied and caught.value.retryable
    assert server.requests == 1


def test_an_answer_that_stalls_mid_body_is_a_read_timeout_that_may_have_created_the_job(raw_server) -> None:
    raw_server.append(server := RawServer(b"HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{\"id\": "))
    with _client(server.base_url, attempts=3, read_timeout=0.2) as client, pytest.raises(TransportError) as caught:
        client.create_job(["storage://a"], {}, tag="t")
    assert caught.value.reason == "timed out waiting for the response"
    assert caught.value.maybe_applied and server.requests == 1


def test_a_proxy_from_the_environment_carries_the_calls(server, no_proxies) -> None:
    """The scripted server plays the proxy: it receives the request for the named host in absolute form."""
    no_proxies.setenv("HTTP_PROXY", server.base_url.removesuffix("/api/v1"))
    server.script("GET", "/jobs/j1/", Reply(200, job_json("j1")))
    with _client("http://deepva.invalid/api/v1") as client:
        assert client.get_job("j1").id == "j1"
    assert [(request.path, request.headers["host"]) for request in server.received] == [("/jobs/j1/", "deepva.invalid")]


def test_no_proxy_bypasses_the_proxy(server, no_proxies) -> None:
    no_proxies.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # bound, then closed: nobody listens
    server.script("GET", "/jobs/j1/", Reply(200, job_json("j1")))
    with _client(server.base_url) as client, pytest.raises(TransportError) as caught:
        client.get_job("j1")
    assert caught.value.reason == "proxy error" and server.received == []

    no_proxies.setenv("NO_PROXY", "deepva.internal,127.0.0.1")
    with _client(server.base_url) as client:
        assert client.get_job("j1").id == "j1"
    assert len(server.received) == 1


def test_https_proxy_and_no_proxy_suffixes_as_requests_reads_them(no_proxies) -> None:
    """What an operator writes for a TLS endpoint: the settings requests applies to each call."""
    no_proxies.setenv("HTTPS_PROXY", "http://proxy.newsroom.example:3128")
    no_proxies.setenv("NO_PROXY", "deepva.internal,.lan")
    session = requests.Session()

    def proxies_for(url: str) -> dict[str, str]:
        return session.merge_environment_settings(url, {}, None, None, None)["proxies"]

    assert proxies_for("https://api.deepva.com/api/v1").get("https") == "http://proxy.newsroom.example:3128"
    assert "https" not in proxies_for("https://deepva.internal/api/v1")
    assert "https" not in proxies_for("https://deepva.studio.lan/api/v1")
    assert "http" not in proxies_for("http://10.0.0.5:8000/api/v1")  # no HTTP_PROXY set


def test_netrc_credentials_never_replace_the_key(server, make_client, monkeypatch, tmp_path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password elsewhere\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    server.script("GET", "/jobs/j1/", Reply(200, job_json("j1")))
    make_client().get_job("j1")
    assert server.received[0].headers["authorization"] == f"Key {API_KEY}"


def test_cookies_a_server_sets_are_not_sent_back(server, make_client) -> None:
    server.script("GET", "/jobs/j1/", Reply(200, job_json("j1"), headers={"Set-Cookie": "sessionid=abc; Path=/"}))
    client = make_client()
    client.get_job("j1")
    client.get_job("j1")
    assert all("cookie" not in request.headers for request in server.received)


def test_a_rotated_key_is_sent_from_the_next_call_on(server, make_client) -> None:
    server.script("GET", "/jobs/j1/", Reply(200, job_json("j1")))
    client = make_client()
    client.get_job("j1")
    client.set_api_key("rotated-key-0123456789")
    client.get_job("j1")
    assert [request.headers["authorization"] for request in server.received] == [
        f"Key {API_KEY}", "Key rotated-key-0123456789"]
    assert client.api_key == "rotated-key-0123456789"


def test_a_session_passed_in_is_used_and_left_open(server) -> None:
    server.script("GET", "/jobs/j1/", Reply(200, job_json("j1")))
    session = requests.Session()
    with DeepVAClient(server.base_url, API_KEY, session=session, retry=RetryPolicy(attempts=1)) as client:
        assert client.get_job("j1").id == "j1"
    assert session.adapters  # close() left the caller's session alone
    session.close()
