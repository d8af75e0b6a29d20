"""Secrets stay secret: the API key and the webhook secret never reach logs, the ledger, sidecars, exception text or a
process's argv; files holding them are checked for loose permissions; TLS is verified, with a CA bundle for private CAs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import traceback
from pathlib import Path

import pytest

from deepva_watch.config import load_config, permission_warnings
from deepva_watch.deepva import DeepVAClient, DeepVAError, RetryPolicy, TransportError
from tests.conftest import API_KEY, FIXTURES, free_port, ledger_rows, require_program, wait_for, write_config
from tests.hostile.conftest import rows_when_final
from tests.hostile.fake_deepva import Answers, FakeDeepVA, as_json, plain_job

WEBHOOK_SECRET = "whsec-9c1e77d04b2a5f38e6"


def _all_text(error: BaseException) -> str:
    return "\n".join([str(error), repr(error), "".join(traceback.format_exception(error)), repr(vars(error))])


def test_secrets_reach_no_log_ledger_sidecar_or_argv(tmp_path, daemon_factory):
    """The server echoes the key in every error body and once in a broken 200 answer; the daemon logs at debug level
    and runs a webhook receiver with its secret. Afterwards every file the daemon wrote is searched for both."""
    calls: dict[str, int] = {"flaky": 0}

    def echoing_500_then_fine(job_id: str, tag: str, source: str) -> Answers:
        calls["flaky"] += 1
        if calls["flaky"] <= 2:
            return Answers(as_json({"detail": f"upstream failed for Key {API_KEY}"}), status=500)
        return Answers(as_json(plain_job(job_id, tag, source)))

    def key_in_broken_answer(job_id: str, tag: str, source: str) -> Answers:
        return Answers(f"<html>Authorization: Key {API_KEY}</html>".encode())

    def key_in_client_error(job_id: str, tag: str, source: str) -> Answers:
        return Answers(as_json({"detail": f"bad request from Key {API_KEY}"}), status=400)

    server = FakeDeepVA(API_KEY, echo_key_in_errors=True, scenarios={
        "flaky": echoing_500_then_fine, "broken": key_in_broken_answer, "refused": key_in_client_error}).start()
    try:
        watch = tmp_path / "watch"
        watch.mkdir()
        config = _config_with_webhook_secret(tmp_path, server, watch)
        for name in ("flaky--1.jpg", "broken--1.jpg", "refused--1.jpg", "plain.jpg"):
            shutil.copy(FIXTURES / "sample.jpg", watch / name)
        daemon = daemon_factory(config)
        assert daemon.process is not None
        wait_for(lambda: ledger_rows(tmp_path / "ledger.sqlite3"), 30, "the daemon to start")
        pid = daemon.process.pid
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        rows = rows_when_final(tmp_path / "ledger.sqlite3", 4, 90)
        assert daemon.stop() == 0
    finally:
        server.stop()

    states = {row["relpath"]: row["state"] for row in rows}
    assert states == {"flaky--1.jpg": "published", "broken--1.jpg": "failed", "refused--1.jpg": "failed",
                      "plain.jpg": "published"}, rows
    assert any("***" in (row["last_error"] or "") for row in rows), "the echoed key should show as redacted"
    log = daemon.log_text()
    assert "api_retry" in log  # the echoing 500s were seen and logged
    for secret in (API_KEY, WEBHOOK_SECRET):
        assert secret.encode() not in argv and secret.encode() not in environ
        assert secret not in log, f"secret in the daemon log: {log[log.find(secret) - 200:][:400]}"
        for written in [*tmp_path.glob("ledger.sqlite3*"), *watch.iterdir()]:
            assert secret.encode() not in written.read_bytes(), f"secret leaked into {written.name}"


def _config_with_webhook_secret(tmp_path: Path, server: FakeDeepVA, watch: Path) -> Path:
    """A config whose webhook secret the daemon registers as a secret (the receiver is never called)."""
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text(WEBHOOK_SECRET + "\n")
    return write_config(tmp_path, server.base_url, [watch], webhook={
        "listen": f"127.0.0.1:{free_port()}", "callback_url": "http://127.0.0.1:1/hook", "secret_file": str(secret_file)})


def test_webhook_secret_echoed_by_the_api_stays_out_of_the_ledger(tmp_path, daemon_factory):
    def secret_in_broken_answer(job_id: str, tag: str, source: str) -> Answers:
        return Answers(f"<html>{WEBHOOK_SECRET}</html>".encode())

    server = FakeDeepVA(API_KEY, scenarios={"broken": secret_in_broken_answer}).start()
    try:
        watch = tmp_path / "watch"
        watch.mkdir()
        config = _config_with_webhook_secret(tmp_path, server, watch)
        shutil.copy(FIXTURES / "sample.jpg", watch / "broken--1.jpg")
        daemon = daemon_factory(config)
        rows = rows_when_final(tmp_path / "ledger.sqlite3", 1, 60)
        assert daemon.stop() == 0
    finally:
        server.stop()
    assert rows[0]["state"] == "failed"
    assert WEBHOOK_SECRET not in daemon.log_text()
    assert WEBHOOK_SECRET not in (rows[0]["last_error"] or "")


def test_every_client_error_keeps_an_echoed_key_out_of_its_text(tmp_path):
    """Each error type the client raises, provoked by a server that repeats the key in everything it sends."""
    statuses = {400: "BadRequest", 401: "NotAuthenticated", 403: "NotAuthenticated", 404: "NotFound",
                405: "MethodNotAllowed", 409: "ClientError", 429: "RateLimited", 500: "ServerError", 503: "ServerError"}
    seen: set[str] = set()
    for status, kind in statuses.items():
        def scenario(job_id: str, tag: str, source: str, status: int = status) -> Answers:
            return Answers(as_json({"detail": f"Key {API_KEY}", "you_sent": f"Authorization: Key {API_KEY}"}), status=status)

        server = FakeDeepVA(API_KEY, echo_key_in_errors=True, scenarios={"s": scenario}).start()
        server.jobs["j"] = type("J", (), {"id": "j", "tag": "", "source": "", "scenario": "s"})()  # type: ignore[assignment]
        try:
            with DeepVAClient(server.base_url, API_KEY, retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01)) as client:
                with pytest.raises(DeepVAError) as caught:
                    client.get_job("j")
        finally:
            server.stop()
        assert type(caught.value).__name__ == kind
        assert API_KEY not in _all_text(caught.value), kind
        seen.add(kind)

    def malformed(job_id: str, tag: str, source: str) -> Answers:
        return Answers(f'{{"id": "{API_KEY}"'.encode())

    def wrong_shape(job_id: str, tag: str, source: str) -> Answers:
        return Answers(as_json({"id": "j", "tag": {"key": API_KEY}}))

    for name, scenario in (("MalformedResponse", malformed), ("MalformedResponse", wrong_shape)):
        server = FakeDeepVA(API_KEY, scenarios={"s": scenario}).start()
        server.jobs["j"] = type("J", (), {"id": "j", "tag": "", "source": "", "scenario": "s"})()  # type: ignore[assignment]
        try:
            with DeepVAClient(server.base_url, API_KEY) as client, pytest.raises(DeepVAError) as caught:
                client.get_job("j")
        finally:
            server.stop()
        assert type(caught.value).__name__ == name and API_KEY not in _all_text(caught.value)
        seen.add(name)

    with DeepVAClient("http://127.0.0.1:9/api/v1", API_KEY, retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(TransportError) as refused:
            client.get_job("j")
    assert API_KEY not in _all_text(refused.value)
    assert len(seen) == 8


def test_permission_warnings_name_loose_secret_and_config_files(tmp_path):
    watch = tmp_path / "watch"
    watch.mkdir()
    config_path = write_config(tmp_path, "http://127.0.0.1:1/api/v1", [watch])
    key_file = tmp_path / "api-key"
    os.chmod(key_file, 0o600)
    os.chmod(config_path, 0o640)
    assert permission_warnings(config_path, load_config(config_path)) == []

    os.chmod(key_file, 0o644)
    os.chmod(config_path, 0o644)
    warnings = permission_warnings(config_path, load_config(config_path))
    assert len(warnings) == 2, warnings
    assert "api.key_file" in warnings[0] and "other users" in warnings[0] and "chmod 600" in warnings[0]
    assert "readable by others" in warnings[1]
    assert API_KEY not in " ".join(warnings)

    os.chmod(key_file, 0o640)
    os.chmod(config_path, 0o664)
    warnings = permission_warnings(config_path, load_config(config_path))
    assert "its group" in warnings[0] and "writable by its group" in warnings[1]


@pytest.fixture
def self_signed(tmp_path) -> tuple[Path, Path]:
    openssl = require_program("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def _tls_server(cert: Path, key: Path) -> FakeDeepVA:
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return FakeDeepVA(API_KEY, ssl_context=context).start()


def test_tls_is_verified_and_a_ca_bundle_makes_a_private_ca_trusted(self_signed):
    cert, key = self_signed
    server = _tls_server(cert, key)
    try:
        sleeps: list[float] = []
        with DeepVAClient(server.base_url, API_KEY, retry=RetryPolicy(attempts=5), sleep=sleeps.append) as client:
            with pytest.raises(TransportError) as caught:
                client.list_jobs()
        assert "certificate" in str(caught.value) and "ca_bundle" in str(caught.value)
        assert sleeps == [], "an untrusted certificate is not retried at once: the answer cannot change"
        assert server.requests == [], "no request may be sent over an unverified connection"
        assert API_KEY not in _all_text(caught.value)

        with DeepVAClient(server.base_url, API_KEY, verify=str(cert)) as client:
            assert client.list_jobs().jobs == ()
        assert server.requests == [("GET", "/api/v1/jobs/")]
    finally:
        server.stop()


def test_daemon_uses_api_ca_bundle(tmp_path, self_signed, daemon_factory):
    cert, key = self_signed
    server = _tls_server(cert, key)
    try:
        watch = tmp_path / "watch"
        watch.mkdir()
        shutil.copy(FIXTURES / "sample.jpg", watch / "a.jpg")
        config = write_config(tmp_path, server.base_url, [watch])
        import yaml

        data = yaml.safe_load(config.read_text())
        data["api"]["ca_bundle"] = str(cert)
        config.write_text(yaml.safe_dump(data))
        daemon = daemon_factory(config)
        rows = rows_when_final(tmp_path / "ledger.sqlite3", 1, 60)
        assert daemon.stop() == 0
        assert rows[0]["state"] == "published", rows[0]
    finally:
        server.stop()
