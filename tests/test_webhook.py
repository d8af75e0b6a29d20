"""The webhook receiver: real HTTP on a loopback port, nonces kept in a real ledger, signatures checked."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from structlog.testing import capture_logs

from deepva_watch.config import ConfigError, Secret, WebhookConfig
from deepva_watch.deepva.webhook import (
    NONCE_SETTING,
    NonceStore,
    WebhookReceiver,
    load_secret,
    parse_delivery,
    sign,
    webhook_request,
)
from deepva_watch.ledger import Ledger, SqliteLedger

SECRET = "whsec-3b9e1f7a4c2d"
CONFIG = WebhookConfig(listen="127.0.0.1:0", callback_url="https://watch.example:8787/hooks/deepva",
                       secret_file=Path("/unused"), signature_header="X-Test-Signature", nonce_header="X-Test-Nonce")


class Clock:
    def now(self) -> float:
        return 1_700_000_000.0


class Calls:
    def __init__(self) -> None:
        self.jobs: list[tuple[str, str]] = []

    def __call__(self, job_id: str, state: str) -> None:
        self.jobs.append((job_id, state))


def delivery(job_id: str = "job-1", state: str | None = "completed", event: str = "job.face_recognition.on_completed") -> bytes:
    job: dict[str, Any] = {"id": job_id}
    if state is not None:
        job["state"] = state
    return json.dumps({"event": event, "timestamp": 1574251637.83, "data": {"job": job}}).encode()


def headers(body: bytes, nonce: int | str, secret: str = SECRET, *, prefix: str = "") -> dict[str, str]:
    return {"X-Test-Signature": prefix + hmac.new(secret.encode(), body, hashlib.sha512).hexdigest(),
            "X-Test-Nonce": str(nonce), "Content-Type": "application/json"}


def ledger_nonce_store(ledger: Ledger, now: Any) -> NonceStore:
    """As the daemon keeps them: in the ledger's settings, compared and stored in one transaction."""
    return lambda nonce: ledger.advance_setting(NONCE_SETTING, nonce, now())


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return SqliteLedger(tmp_path / "ledger.sqlite3")


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def receiver(ledger: Ledger, calls: Calls) -> Iterator[WebhookReceiver]:
    started = WebhookReceiver(CONFIG, Secret(SECRET), ledger_nonce_store(ledger, Clock().now), calls).start()
    try:
        yield started
    finally:
        started.stop()


def url(receiver: WebhookReceiver, path: str = "/hooks/deepva") -> str:
    return f"http://127.0.0.1:{receiver.port}{path}"


def post(receiver: WebhookReceiver, body: bytes, hdrs: dict[str, str], path: str = "/hooks/deepva") -> requests.Response:
    return requests.post(url(receiver, path), data=body, headers=hdrs, timeout=5)


def test_a_signed_delivery_is_answered_200_and_names_its_job(receiver, calls, ledger):
    body = delivery("job-42")
    response = post(receiver, body, headers(body, 1))
    assert response.status_code == 200
    assert calls.jobs == [("job-42", "completed")]
    assert ledger.get_setting(NONCE_SETTING) == "1"


def test_the_signature_may_carry_a_sha512_prefix_and_the_root_path_is_accepted(receiver, calls):
    body = delivery("job-7", state="failed", event="job.face_recognition.on_failed")
    assert post(receiver, body, headers(body, 5, prefix="sha512="), path="/").status_code == 200
    assert calls.jobs == [("job-7", "failed")]


def test_increasing_nonces_are_accepted_one_after_another(receiver, calls):
    for nonce, job in ((10, "a"), (11, "b"), (1000, "c")):
        body = delivery(job)
        assert post(receiver, body, headers(body, nonce)).status_code == 200
    assert [job for job, _ in calls.jobs] == ["a", "b", "c"]


def rejected(receiver: WebhookReceiver, body: bytes, hdrs: dict[str, str], calls: Calls, status: int = 401) -> list[dict]:
    before = list(calls.jobs)
    with capture_logs() as logs:
        response = post(receiver, body, hdrs)
    assert response.status_code == status
    assert calls.jobs == before
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["event"] == "webhook_rejected"
    assert SECRET not in repr(logs) and hdrs.get("X-Test-Signature", "-" * 20)[-20:] not in repr(logs)
    return warnings


def test_a_forged_signature_is_refused(receiver, calls, ledger):
    body = delivery()
    forged = headers(body, 1)
    forged["X-Test-Signature"] = forged["X-Test-Signature"][:-4] + "0000"
    rejected(receiver, body, forged, calls)
    assert ledger.get_setting(NONCE_SETTING) is None  # a forged delivery does not use up nonces


def test_a_body_changed_after_signing_is_refused(receiver, calls):
    body = delivery("job-1")
    rejected(receiver, delivery("job-2"), headers(body, 1), calls)


def test_a_delivery_signed_with_another_secret_is_refused(receiver, calls):
    body = delivery()
    (warning,) = rejected(receiver, body, headers(body, 1, secret="not-the-secret"), calls)
    assert "signature" in warning["reason"]


@pytest.mark.parametrize("missing", ["X-Test-Signature", "X-Test-Nonce"])
def test_missing_headers_are_refused(receiver, calls, missing):
    body = delivery()
    hdrs = headers(body, 1)
    del hdrs[missing]
    (warning,) = rejected(receiver, body, hdrs, calls)
    assert missing in warning["reason"]


def test_the_default_header_names_are_not_assumed_when_others_are_configured(receiver, calls):
    body = delivery()
    signed = headers(body, 1)
    hdrs = {"X-DeepVA-Signature": signed["X-Test-Signature"], "X-DeepVA-Nonce": "1"}
    rejected(receiver, body, hdrs, calls)


@pytest.mark.parametrize("nonce", ["abc", "-5", "1.5", "+3", "", "1" * 41])
def test_a_nonce_that_is_not_a_whole_number_is_refused(receiver, calls, nonce):
    body = delivery()
    rejected(receiver, body, headers(body, nonce), calls)


def test_a_replayed_or_older_nonce_is_refused(receiver, calls):
    body = delivery()
    assert post(receiver, body, headers(body, 7)).status_code == 200
    (warning,) = rejected(receiver, body, headers(body, 7), calls)
    assert "replay" in warning["reason"]
    other = delivery("job-2")
    rejected(receiver, other, headers(other, 6), calls)
    assert calls.jobs == [("job-1", "completed")]


def test_a_replay_is_refused_after_a_restart_too(tmp_path, calls):
    body = delivery()
    first = WebhookReceiver(CONFIG, SECRET, ledger_nonce_store(SqliteLedger(tmp_path / "l.sqlite3"), Clock().now), calls).start()
    try:
        assert post(first, body, headers(body, 3)).status_code == 200
    finally:
        first.stop()
    second = WebhookReceiver(CONFIG, SECRET, ledger_nonce_store(SqliteLedger(tmp_path / "l.sqlite3"), Clock().now), calls).start()
    try:
        rejected(second, body, headers(body, 3), calls)
        newer = delivery("job-9")
        assert post(second, newer, headers(newer, 4)).status_code == 200
    finally:
        second.stop()
    assert calls.jobs == [("job-1", "completed"), ("job-9", "completed")]


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"event": "job.x.on_completed"}', b'{"data": {"job": []}}', b'{"data": {"job": {"id": ""}}}',
     b'{"data": {"job": {"state": "completed"}}}', b"\xff\xfe"],
)
def test_a_signed_but_malformed_body_is_answered_400(receiver, calls, ledger, body):
    rejected(receiver, body, headers(body, 1), calls, status=400)
    assert ledger.get_setting(NONCE_SETTING) is None


def test_an_oversize_body_is_refused_before_it_is_read(ledger, calls):
    small = WebhookReceiver(CONFIG, SECRET, ledger_nonce_store(ledger, Clock().now), calls, max_body_bytes=1024).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", small.port, timeout=5)
        connection.putrequest("POST", "/hooks/deepva")
        connection.putheader("Content-Length", str(50 * 1024 * 1024))
        connection.putheader("X-Test-Nonce", "1")
        connection.putheader("X-Test-Signature", "0" * 128)
        connection.endheaders()  # no body follows: the receiver must answer without waiting for it
        response = connection.getresponse()
        assert response.status == 413
        connection.close()
        body = delivery() + b" " * 2000
        assert post(small, body, headers(body, 1)).status_code == 413
    finally:
        small.stop()
    assert calls.jobs == []


def test_other_paths_and_methods_are_not_served(receiver, calls):
    body = delivery()
    assert post(receiver, body, headers(body, 1), path="/elsewhere").status_code == 404
    assert requests.get(url(receiver), timeout=5).status_code == 405
    assert calls.jobs == []


def test_a_failing_callback_is_answered_500_and_the_receiver_keeps_serving(ledger):
    def broken(job_id: str, state: str) -> None:
        raise RuntimeError("ledger busy")

    failing = WebhookReceiver(CONFIG, SECRET, ledger_nonce_store(ledger, Clock().now), broken).start()
    try:
        body = delivery()
        assert post(failing, body, headers(body, 1)).status_code == 500
        assert post(failing, body, headers(body, 2)).status_code == 500
    finally:
        failing.stop()


def test_the_state_falls_back_to_the_event_and_numeric_ids_become_text():
    assert parse_delivery(delivery("j", state=None, event="job.face_recognition.on_failed")) == (
        "job.face_recognition.on_failed", "j", "failed")
    assert parse_delivery(b'{"data": {"job": {"id": 12, "state": "COMPLETED"}}}') == ("", "12", "completed")


def test_sign_matches_an_independent_hmac():
    assert sign(Secret(SECRET), b"{}") == hmac.new(SECRET.encode(), b"{}", hashlib.sha512).hexdigest()


def test_the_webhook_request_names_completion_and_failure_events_per_module():
    assert webhook_request(CONFIG, ["face_recognition", "object_scene_recognition"]) == {
        "events": ["job.face_recognition.on_completed", "job.face_recognition.on_failed",
                   "job.object_scene_recognition.on_completed", "job.object_scene_recognition.on_failed"],
        "callback": "https://watch.example:8787/hooks/deepva",
    }
    assert webhook_request(WebhookConfig(), ["face_recognition"]) is None


def test_the_secret_is_read_from_its_file_and_problems_name_the_key(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    secret = load_secret(WebhookConfig(secret_file=secret_file))
    assert secret.reveal() == SECRET and SECRET not in repr(secret)
    for config in (WebhookConfig(secret_file=tmp_path / "missing"), WebhookConfig(secret_file=_empty(tmp_path)),
                   WebhookConfig()):
        with pytest.raises(ConfigError) as raised:
            load_secret(config)
        assert raised.value.key_path == "webhook.secret_file"


def _empty(tmp_path: Path) -> Path:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    return empty
