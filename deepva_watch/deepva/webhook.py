"""The built-in receiver for DeepVA's job callbacks: a hint that a job has finished, so it is looked at now.

A delivery never changes a job's state by itself. It only tells the daemon which job to ask about (``on_job``); the
track stage then fetches the job from the API as it always does. So the receiver trusts the body for no more than a job
id, polling stays the guarantee (deliveries are not retried; the receiver may be down or unreachable), and even a
delivery that slipped past the checks could cause nothing worse than an early status request.

Still, every delivery is checked as DeepVA documents it: an HMAC-SHA512 of the exact body bytes with the secret set in
the DeepVA web app, and a nonce that must be greater than the last one accepted. DeepVA does not publish the header
names, so both come from the config. The last nonce is kept by the caller's :data:`NonceStore` (the daemon keeps it in
the ledger), so a delivery replayed after a restart is refused too.

This module is the one place that knows the webhook's JSON field names, both of the request (``webhook.events``,
``webhook.callback``) and of the delivery (``event``, ``data.job.id``, ``data.job.state``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import structlog

from deepva_watch.config import ConfigError, Secret, WebhookConfig, read_secret_file
from deepva_watch.listener import Listener

log = structlog.get_logger("deepva_watch.webhook")

#: The name under which the daemon keeps the last accepted nonce.
NONCE_SETTING = "webhook_nonce"
#: A job callback is a few kilobytes: a longer body is refused before it is read, and so before its signature can be
#: checked, so that unauthenticated clients cannot make the daemon hold much.
MAX_BODY_BYTES = 64 * 1024
#: The events asked for per module. Failures are included so a failed job is noticed as quickly as a finished one.
EVENT_SUFFIXES = ("on_completed", "on_failed")
_SIGNATURE_PREFIX = "sha512="
_MAX_NONCE_DIGITS = 40

#: Called with (job id, state as the delivery reports it) for every verified delivery.
JobCallback = Callable[[str, str], object]
#: Accepts a nonce (storing it) only if it is greater than every nonce accepted before; True if accepted.
NonceStore = Callable[[int], bool]


def webhook_request(config: WebhookConfig, modules: Iterable[str]) -> dict[str, Any] | None:
    """The ``webhook`` object to send with each job, or None when no receiver is configured."""
    if not config.listen or not config.callback_url:
        return None
    events: list[str] = []
    for module in modules:
        for suffix in EVENT_SUFFIXES:
            event = f"job.{module}.{suffix}"
            if event not in events:
                events.append(event)
    return {"events": events, "callback": config.callback_url}


def load_secret(config: WebhookConfig) -> Secret:
    """The signing secret from ``webhook.secret_file``; the caller registers it with ``log.register_secret``."""
    if config.secret_file is None:
        raise ConfigError("webhook.secret_file", "required when webhook.listen is set: deliveries must be verified")
    return read_secret_file(config.secret_file, "webhook.secret_file")




def sign(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA512 of ``body``, as DeepVA computes it; the emulator and tests sign with it too."""
    key = secret.reveal() if isinstance(secret, Secret) else secret
    return hmac.new(key.encode("utf-8"), body, hashlib.sha512).hexdigest()


class Rejected(Exception):
    """A delivery that is answered with ``status`` and logged with ``reason`` (never with the secret or signature)."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def parse_delivery(body: bytes) -> tuple[str, str, str]:
    """``(event, job id, state)`` from a delivery ``{"event": …, "timestamp": …, "data": {"job": {…}}}``.

    The state falls back to the event's suffix (``on_completed`` → ``completed``) for a job object without one; it is
    only a hint either way.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Rejected(HTTPStatus.BAD_REQUEST, "body is not JSON") from None
    data = document.get("data") if isinstance(document, dict) else None
    job = data.get("job") if isinstance(data, dict) else None
    if not isinstance(job, dict):
        raise Rejected(HTTPStatus.BAD_REQUEST, "body has no data.job object")
    job_id = job.get("id")
    if isinstance(job_id, int) and not isinstance(job_id, bool):
        job_id = str(job_id)
    if not isinstance(job_id, str) or not job_id.strip():
        raise Rejected(HTTPStatus.BAD_REQUEST, "data.job has no id")
    event = document.get("event")
    event = event if isinstance(event, str) else ""
    state = job.get("state")
    if not isinstance(state, str) or not state:
        suffix = event.rpartition(".")[2]
        state = suffix.removeprefix("on_") if suffix.startswith("on_") else "unknown"
    return event, job_id.strip(), state.lower()


class WebhookReceiver:
    """An HTTP endpoint on ``webhook.listen`` (port 0 picks a free port, see :attr:`port`), served by a bounded
    :class:`~deepva_watch.listener.Listener`.

    Answers: 200 for a verified delivery (after ``on_job``), 401 for a bad signature, a missing header, or a nonce that
    is not an integer greater than the last accepted one, 400 for a verified body without a job, 411 without a length,
    413 for a body over ``max_body_bytes`` (refused before it is read), 404/405 for other paths and methods. The
    signature is checked before the nonce, so forged deliveries cannot use up nonces.
    """

    def __init__(
        self,
        config: WebhookConfig,
        secret: str,
        nonces: NonceStore,
        on_job: JobCallback,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if not config.listen:
            raise ConfigError("webhook.listen", "no address to listen on")
        self._settings = _Settings(config, secret)
        self._nonces = nonces
        self._on_job = on_job
        self._listener = Listener(config.listen, self._app, name="webhook", max_body_bytes=max_body_bytes)

    @property
    def listen(self) -> str:
        return self._settings.config.listen or ""

    def use(self, config: WebhookConfig, secret: str) -> None:
        """A reloaded config and secret on the same address, in force from the next delivery on."""
        self._settings = _Settings(config, secret)

    @property
    def port(self) -> int:
        return self._listener.address[1]

    @property
    def host(self) -> str:
        return self._listener.address[0]

    def start(self) -> WebhookReceiver:
        self._listener.start()
        return self

    def stop(self) -> None:
        self._listener.stop()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def answer(status: HTTPStatus, message: str) -> Iterable[bytes]:
            payload = json.dumps({"status": int(status), "message": message}).encode("utf-8")
            start_response(f"{status.value} {status.phrase}",
                           [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
            return [payload]

        def reject(rejected: Rejected) -> Iterable[bytes]:
            log.warning("webhook_rejected", status=int(rejected.status), reason=rejected.reason,
                        remote=environ.get("REMOTE_ADDR"), path=environ.get("PATH_INFO"))
            # 401 says nothing about which check failed; the log line tells the operator.
            return answer(rejected.status,
                          "unauthorized" if rejected.status == HTTPStatus.UNAUTHORIZED else rejected.reason)

        if not self.accepts_path(environ.get("PATH_INFO", "")):
            return answer(HTTPStatus.NOT_FOUND, "no such path")
        if environ.get("REQUEST_METHOD") != "POST":
            return answer(HTTPStatus.METHOD_NOT_ALLOWED, "only POST")
        length_text = environ.get("CONTENT_LENGTH") or ""
        if not length_text.strip().isdigit():
            return reject(Rejected(HTTPStatus.LENGTH_REQUIRED, "no Content-Length"))
        length = int(length_text)
        body = environ["wsgi.input"].read(length)
        if len(body) != length:
            return reject(Rejected(HTTPStatus.BAD_REQUEST, "body shorter than its Content-Length"))
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        try:
            self.handle(headers, body)
        except Rejected as rejected:
            return reject(rejected)
        except Exception as error:  # the daemon's callback failed: polling will still find the job
            log.error("webhook_callback_failed", error=repr(error)[:300])
            return answer(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        return answer(HTTPStatus.OK, "ok")

    # -- one delivery ---------------------------------------------------------------------------------------------

    def accepts_path(self, path: str) -> bool:
        return urlsplit(path).path in self._settings.paths

    def handle(self, headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
        """Verify and parse one delivery (``headers`` by lower-case name); raises :class:`Rejected`. Returns
        ``(job id, state)`` and calls ``on_job``."""
        settings = self._settings  # one delivery is checked against one config, even during a reload
        config = settings.config
        signature = headers.get(config.signature_header.lower())
        nonce_text = headers.get(config.nonce_header.lower())
        if not signature:
            raise Rejected(HTTPStatus.UNAUTHORIZED, f"missing header {config.signature_header}")
        if nonce_text is None or not nonce_text.strip():
            raise Rejected(HTTPStatus.UNAUTHORIZED, f"missing header {config.nonce_header}")
        if not _signature_matches(settings.secret, signature, body):
            raise Rejected(HTTPStatus.UNAUTHORIZED, "signature does not match the body and the configured secret")
        nonce = _nonce(nonce_text)
        event, job_id, state = parse_delivery(body)
        if not self._nonces(nonce):
            raise Rejected(HTTPStatus.UNAUTHORIZED, f"nonce {nonce} is not greater than the last accepted one (replay)")
        log.info("webhook_received", webhook_event=event, job_id=job_id, job_state=state, nonce=nonce)
        self._on_job(job_id, state)
        return job_id, state



@dataclass(frozen=True)
class _Settings:
    """What a reload may change on a running receiver, swapped as one."""

    config: WebhookConfig
    secret: str

    @property
    def paths(self) -> set[str]:
        callback_path = urlsplit(self.config.callback_url or "").path.rstrip("/")
        return {"/", callback_path or "/", f"{callback_path}/"}


def _signature_matches(secret: str, given: str, body: bytes) -> bool:
    given = given.strip()
    if given[: len(_SIGNATURE_PREFIX)].lower() == _SIGNATURE_PREFIX:
        given = given[len(_SIGNATURE_PREFIX):]
    expected = sign(secret, body)
    return hmac.compare_digest(expected.encode("ascii"), given.lower().encode("latin-1", "replace"))


def _nonce(text: str) -> int:
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or len(digits) > _MAX_NONCE_DIGITS:
        raise Rejected(HTTPStatus.UNAUTHORIZED, "nonce is not a non-negative integer")
    return int(digits)
