"""Status codes and transport failures become typed errors, and only the transient ones are retried."""

from __future__ import annotations

import json
import socket

import pytest
from structlog.testing import capture_logs
from deepva_scripted_server import Reply, ScriptedServer, job_json

from deepva_watch.deepva import (
    BadRequest,
    ClientError,
    DeepVAError,
    MalformedResponse,
    MethodNotAllowed,
    NotAuthenticated,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServerError,
    TransportError,
    models,
)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, BadRequest),
        (401, NotAuthenticated),
        (403, NotAuthenticated),
        (404, NotFound),
        (405, MethodNotAllowed),
        (409, ClientError),
        (422, ClientError),
    ],
)
def test_client_errors_map_to_their_exception_and_are_not_retried(server, make_client, sleep, status, expected):
    server.script("GET", "/jobs/j1/", Reply(status, {"detail": "nope"}))

    with pytest.raises(expected) as caught:
        make_client().get_job("j1")

    assert caught.value.status == status
    assert caught.value.retryable is False
    assert caught.value.method == "GET"
    assert caught.value.url == "/jobs/j1/"
    assert len(server.requests_to("GET", "/jobs/j1/")) == 1
    assert sleep.delays == []


@pytest.mark.parametrize(("status", "expected"), [(500, ServerError), (502, ServerError), (503, ServerError),
                                                  (429, RateLimited)])
def test_transient_statuses_are_retried_until_the_budget_is_spent(server, make_client, sleep, status, expected):
    server.script("GET", "/jobs/j1/", Reply(status, {"detail": "busy"}))

    with pytest.raises(expected) as caught:
        make_client(retry=RetryPolicy(attempts=4)).get_job("j1")

    assert caught.value.retryable is True
    assert len(server.requests_to("GET", "/jobs/j1/")) == 4
    assert len(sleep.delays) == 3


def test_error_text_is_one_readable_line(server, make_client):
    server.script("POST", "/jobs/", Reply(400, '{"detail": "unknown module\\nfoo"}\r\n'))

    with pytest.raises(BadRequest) as caught:
        make_client().create_job(["storage://a"], {"foo": {}}, tag="t")

    assert str(caught.value) == 'POST /jobs/: 400 Bad Request: {"detail": "unknown module\\nfoo"}'
    assert "\n" not in repr(caught.value)


def test_excerpt_is_cut_and_stripped_of_control_characters(server, make_client):
    server.script("GET", "/jobs/j1/", Reply(500, "line one\nline\x1b[31m two " + "x" * 1000))

    with pytest.raises(ServerError) as caught:
        make_client(retry=RetryPolicy(attempts=1)).get_job("j1")

    assert len(caught.value.excerpt) == 300
    assert caught.value.excerpt.startswith("line one line [31m two x")


def test_server_error_then_success_is_retried_with_bounded_backoff(server, make_client, sleep):
    server.script("GET", "/jobs/j1/", Reply(500), Reply(502), Reply(200, job_json("j1")))

    job = make_client(retry=RetryPolicy(attempts=5, base_delay=0.5, max_delay=30)).get_job("j1")

    assert job.id == "j1"
    assert len(server.requests_to("GET", "/jobs/j1/")) == 3
    assert len(sleep.delays) == 2
    assert 0 <= sleep.delays[0] <= 0.5
    assert 0 <= sleep.delays[1] <= 1.0


def test_backoff_ceiling_never_exceeds_max_delay(server, make_client, sleep):
    server.script("GET", "/jobs/j1/", Reply(503))

    with pytest.raises(ServerError):
        make_client(retry=RetryPolicy(attempts=8, base_delay=1.0, max_delay=2.0)).get_job("j1")

    assert len(sleep.delays) == 7
    assert all(0 <= delay <= 2.0 for delay in sleep.delays)


def test_rate_limit_honours_retry_after_seconds(server, make_client, sleep):
    server.script("GET", "/jobs/j1/", Reply(429, {"detail": "slow down"}, headers={"Retry-After": "3"}),
                  Reply(200, job_json("j1")))

    make_client().get_job("j1")

    assert sleep.delays == [3.0]


def test_a_longer_wait_is_not_slept_inside_the_call(server, make_client, sleep):
    """A worker must not sleep for a server: the wait goes back to the caller, which keeps it in the ledger."""
    server.script("POST", "/jobs/", Reply(429, {"detail": "slow down"}, headers={"Retry-After": "300"}))

    with pytest.raises(RateLimited) as caught:
        make_client().create_job(["storage://x"], {"m": {}}, tag="t")

    assert sleep.delays == [] and caught.value.retry_after == 300.0
    assert len(server.requests_to("POST", "/jobs/")) == 1


def test_retry_after_on_503_and_as_http_date(server, make_client, sleep):
    server.script("GET", "/jobs/j1/", Reply(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
                  Reply(503, headers={"Retry-After": "2"}), Reply(200, job_json("j1")))

    make_client().get_job("j1")

    assert sleep.delays == [0.0, 2.0]  # a date in the past means "now"


def test_an_absurd_retry_after_goes_back_to_the_caller_unslept(server, make_client, sleep):
    server.script("GET", "/jobs/j1/", Reply(429, headers={"Retry-After": "86400"}), Reply(200, job_json("j1")))

    with pytest.raises(RateLimited) as caught:
        make_client().get_job("j1")

    assert sleep.delays == [] and caught.value.retry_after == 86400.0


def test_rate_limited_error_carries_retry_after_to_the_caller(server, make_client):
    server.script("GET", "/jobs/j1/", Reply(429, headers={"Retry-After": "12"}))

    with pytest.raises(RateLimited) as caught:
        make_client(retry=RetryPolicy(attempts=1)).get_job("j1")

    assert caught.value.retry_after == 12.0


def test_unauthenticated_is_not_retried(server, make_client, sleep):
    server.script("GET", "/jobs/", Reply(401, {"detail": "Invalid key"}))

    with pytest.raises(NotAuthenticated):
        make_client(retry=RetryPolicy(attempts=5)).list_jobs()

    assert len(server.requests_to("GET", "/jobs/")) == 1
    assert sleep.delays == []


def test_read_timeout_becomes_transport_error_and_is_retried_for_reads(server, make_client, sleep):
    server.script("GET", "/jobs/j1/", Reply(200, job_json("j1"), delay=0.5))

    with pytest.raises(TransportError) as caught:
        make_client(timeout=(1.0, 0.1), retry=RetryPolicy(attempts=2)).get_job("j1")

    assert caught.value.maybe_applied is True
    assert caught.value.status is None
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert str(caught.value) == "GET /jobs/j1/: timed out waiting for the response"
    assert len(server.requests_to("GET", "/jobs/j1/")) == 2
    assert len(sleep.delays) == 1


def test_create_job_timeout_is_not_resent(server, make_client, sleep):
    server.script("POST", "/jobs/", Reply(201, job_json("j1"), delay=0.5))

    with pytest.raises(TransportError) as caught:
        make_client(timeout=(1.0, 0.1), retry=RetryPolicy(attempts=5)).create_job(["storage://a"], {}, tag="asset-1")

    assert caught.value.maybe_applied is True
    assert len(server.requests_to("POST", "/jobs/")) == 1
    assert sleep.delays == []


def test_create_job_dropped_connection_is_not_resent(server, make_client, sleep):
    server.script("POST", "/jobs/", Reply(drop=True))

    with pytest.raises(TransportError) as caught:
        make_client().create_job(["storage://a"], {}, tag="asset-1")

    assert caught.value.maybe_applied is True
    assert len(server.requests_to("POST", "/jobs/")) == 1


def test_create_job_retries_a_429_and_sends_the_documented_body(server, make_client, sleep):
    server.script("POST", "/jobs/", Reply(429), Reply(201, job_json("j9", tag="asset-1")))
    webhook = {"events": ["job.face_recognition.on_completed"], "callback": "https://host/hook"}

    job = make_client().create_job(["storage://a"], {"face_recognition": {"model": "celebrities"}}, tag="asset-1",
                                   webhook=webhook)

    assert (job.id, job.tag) == ("j9", "asset-1")
    sent = server.requests_to("POST", "/jobs/")
    assert len(sent) == 2 and len(sleep.delays) == 1
    assert json.loads(sent[-1].body) == {
        "sources": ["storage://a"],
        "modules": {"face_recognition": {"model": "celebrities"}},
        "tag": "asset-1",
        "webhook": webhook,
    }
    assert sent[-1].headers["content-type"] == "application/json"
    assert sent[-1].headers["authorization"].startswith("Key ")
    assert sent[-1].headers["user-agent"].startswith("deepva-watch/")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_connection_refused_is_retried_even_for_create_job(make_client, sleep):
    client = make_client(base_url=f"http://127.0.0.1:{_closed_port()}/api/v1", retry=RetryPolicy(attempts=3))

    with pytest.raises(TransportError) as caught:
        client.create_job(["storage://a"], {}, tag="asset-1")

    assert caught.value.maybe_applied is False
    assert str(caught.value) == "POST /jobs/: could not connect"
    assert len(sleep.delays) == 2


def test_retries_are_logged_without_headers(server, make_client):
    server.script("GET", "/jobs/j1/", Reply(500), Reply(200, job_json("j1")))
    with capture_logs() as logs:
        make_client().get_job("j1")

    retries = [entry for entry in logs if entry["event"] == "api_retry"]
    assert len(retries) == 1
    assert {key: retries[0][key] for key in ("method", "path", "status", "attempt")} == {
        "method": "GET", "path": "/jobs/j1/", "status": 500, "attempt": 1,
    }
    assert "delay" in retries[0]
    assert not any("authorization" in str(key).lower() for key in retries[0])


def test_malformed_json_is_reported_as_malformed_response(server, make_client, sleep):
    server.script("GET", "/jobs/j1/", Reply(200, "<html>gateway</html>"))

    with pytest.raises(MalformedResponse) as caught:
        make_client().get_job("j1")

    assert isinstance(caught.value, DeepVAError)
    assert isinstance(caught.value, models.MalformedResponse)
    assert caught.value.retryable is False
    assert "<html>gateway</html>" in str(caught.value)
    assert sleep.delays == []


def test_wrong_shape_is_reported_as_malformed_response(server, make_client):
    server.script("GET", "/jobs/j1/", Reply(200, {"state": "waiting"}))

    with pytest.raises(MalformedResponse, match="job has no id"):
        make_client().get_job("j1")


def test_wrong_envelope_is_reported_as_malformed_response(server, make_client):
    server.script("GET", "/jobs/", Reply(200, {"data": "nope"}))

    with pytest.raises(MalformedResponse):
        make_client().list_jobs()


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_create_job_is_not_resent_after_any_5xx(server, make_client, sleep, status):
    """A proxy may answer 5xx after DeepVA created the job: the caller looks for its tag instead of a blind resend."""
    server.script("POST", "/jobs/", Reply(status), Reply(201, job_json("j9", tag="asset-1")))
    with pytest.raises(ServerError):
        make_client().create_job(["storage://a"], {"face_recognition": {}}, tag="asset-1")
    assert len(server.requests_to("POST", "/jobs/")) == 1 and sleep.delays == []


def test_a_redirect_is_not_followed_so_the_key_never_travels_elsewhere(server, make_client, sleep):
    """The API has no redirects; following one would send the Authorization header wherever it points."""
    elsewhere = ScriptedServer().start()
    try:
        server.script("GET", "/jobs/j1/", Reply(302, b"", headers={"Location": f"{elsewhere.base_url}/jobs/j1/"}))
        with pytest.raises(MalformedResponse) as caught:
            make_client().get_job("j1")
        assert caught.value.status == 302
        assert f"redirected to {elsewhere.base_url}/jobs/j1/, not followed: set api.url" in str(caught.value)
        assert elsewhere.received == []
        assert sleep.delays == []
    finally:
        elsewhere.stop()


def test_an_answer_cut_off_mid_way_is_retried_for_reads_and_named_as_such(server, make_client, sleep):
    server.script("GET", "/jobs/j1/", Reply(200, job_json("j1"), cut_short=True), Reply(200, job_json("j1")))
    assert make_client().get_job("j1").id == "j1"
    assert len(server.requests_to("GET", "/jobs/j1/")) == 2 and len(sleep.delays) == 1

    server.script("POST", "/jobs/", Reply(201, job_json("j2"), cut_short=True))
    with pytest.raises(TransportError) as caught:
        make_client().create_job(["https://x/a.jpg"], {"face_recognition": {}}, tag="t")
    assert caught.value.reason == "response cut off" and caught.value.maybe_applied
    assert len(server.requests_to("POST", "/jobs/")) == 1


@pytest.mark.parametrize("key", ["line\nbreak-key-1234", "caf\u00e9\u2603-key-1234"])
def test_a_key_no_header_can_carry_fails_once_without_its_text(server, make_client, sleep, key):
    with pytest.raises(TransportError) as caught:
        make_client(api_key=key).list_jobs()
    assert "invalid request" in str(caught.value) and not caught.value.retryable
    assert key not in str(caught.value) and key not in repr(caught.value)
    assert caught.value.__context__ is None or key not in repr(caught.value.__context__)
    assert sleep.delays == [] and server.received == []
