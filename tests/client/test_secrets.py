"""The API key never leaves the Authorization header: not in errors, reprs, tracebacks or log lines."""

from __future__ import annotations

import pickle
import traceback

import pytest
from deepva_scripted_server import API_KEY, Received, Reply
from structlog.testing import capture_logs

from deepva_watch.deepva import DeepVAError, RetryPolicy
from deepva_watch.deepva.errors import make_excerpt


def _echo_headers(status: int):
    def respond(request: Received) -> Reply:
        return Reply(status, {"detail": f"rejected {request.headers['authorization']}", "key": API_KEY})

    return respond


def _all_text(error: BaseException) -> str:
    return "\n".join([str(error), repr(error), error.excerpt, "".join(traceback.format_exception(error)),  # type: ignore[attr-defined]
                      repr(vars(error))])


@pytest.mark.parametrize("status", [400, 401, 404, 418, 500, 503, 429])
def test_key_echoed_by_the_server_is_redacted_everywhere(server, make_client, status):
    server.respond("GET", "/jobs/j1/", _echo_headers(status))

    with capture_logs() as logs, pytest.raises(DeepVAError) as caught:
        make_client(retry=RetryPolicy(attempts=3)).get_job("j1")

    assert API_KEY not in _all_text(caught.value)
    assert "***" in caught.value.excerpt
    assert API_KEY not in repr(logs)
    if caught.value.retryable:
        assert any(entry["event"] == "api_retry" for entry in logs)


def test_key_in_a_malformed_body_is_redacted(server, make_client):
    server.script("GET", "/jobs/j1/", Reply(200, f"<html>Authorization: Key {API_KEY}</html>"))

    with pytest.raises(DeepVAError) as caught:
        make_client().get_job("j1")

    assert API_KEY not in _all_text(caught.value)


def test_transport_errors_carry_no_request_details(server, make_client):
    server.script("GET", "/jobs/j1/", Reply(200, {}, delay=0.5))

    with capture_logs() as logs, pytest.raises(DeepVAError) as caught:
        make_client(timeout=(1.0, 0.1), retry=RetryPolicy(attempts=2)).get_job("j1")

    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert API_KEY not in _all_text(caught.value) and API_KEY not in repr(logs)
    assert "127.0.0.1" not in str(caught.value)


def test_key_straddling_the_excerpt_cut_is_still_removed():
    body = "x" * 290 + API_KEY + "y" * 50

    excerpt = make_excerpt(body, API_KEY)

    assert API_KEY[:8] not in excerpt
    assert len(excerpt) == 300


def test_client_repr_hides_the_key(make_client):
    assert API_KEY not in repr(make_client())


def test_errors_survive_pickling_between_processes(server, make_client):
    server.script("GET", "/jobs/j1/", Reply(429, {"detail": "later"}, headers={"Retry-After": "3"}))

    with pytest.raises(DeepVAError) as caught:
        make_client(retry=RetryPolicy(attempts=1)).get_job("j1")
    copy = pickle.loads(pickle.dumps(caught.value))

    assert type(copy) is type(caught.value)
    assert (str(copy), copy.retry_after, copy.status) == (str(caught.value), 3.0, 429)
