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
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import urlsplit

import structlog

from deepva_watch.config import ConfigError, Secret, WebhookConfig

log = structlog.get_logger("deepva_watch.webhook")

#: The name under which the daemon keeps the last accepted nonce.
NONCE_SETTING = "webhook_nonce"
#: A job callback is a few kilobytes; anything near this is not one, and is refused before it is read.
MAX_BODY_BYTES = 10 * 1024 * 1024
#: Seconds a connection may stay silent; a slow or stalled client must not hold a handler thread.
SOCKET_TIMEOUT_SECONDS = 10.0
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
    try:
        secret = config.secret_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not readable as UTF-8 text"
        raise ConfigError("webhook.secret_file", f"cannot read {str(config.secret_file)!r}: {reason}") from None
    if not secret:
        raise ConfigError("webhook.secret_file", f"{str(config.secret_file)!r} is empty")
    return Secret(secret)




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
    """An HTTP server on ``webhook.listen`` (port 0 picks a free port, see :attr:`port`) run on a daemon thread.

    Answers: 200 for a verified delivery (after ``on_job``), 401 for a bad signature, a missing header, or a nonce that
    is not an integer greater than the last accepted one, 400 for a verified body without a job, 413 for an oversize
    body, 404/405 for other paths and methods. The signature is checked before the nonce, so forged deliveries cannot
    use up nonces.
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
        self._config = config
        self._secret = secret
        self._nonces = nonces
        self._on_job = on_job
        self.max_body_bytes = max_body_bytes
        callback_path = urlsplit(config.callback_url or "").path.rstrip("/")
        self._paths = {"/", callback_path or "/", f"{callback_path}/"}
        host, port = _listen_address(config.listen)
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    def start(self) -> WebhookReceiver:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="webhook-receiver", daemon=True)
        self._thread.start()
        log.info("webhook_listening", host=self.host, port=self.port, callback_url=self._config.callback_url)
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    # -- one delivery ---------------------------------------------------------------------------------------------

    def accepts_path(self, path: str) -> bool:
        return urlsplit(path).path in self._paths

    def handle(self, headers: Any, body: bytes) -> tuple[str, str]:
        """Verify and parse one delivery; raises :class:`Rejected`. Returns ``(job id, state)`` and calls ``on_job``."""
        signature = headers.get(self._config.signature_header)
        nonce_text = headers.get(self._config.nonce_header)
        if not signature:
            raise Rejected(HTTPStatus.UNAUTHORIZED, f"missing header {self._config.signature_header}")
        if nonce_text is None or not nonce_text.strip():
            raise Rejected(HTTPStatus.UNAUTHORIZED, f"missing header {self._config.nonce_header}")
        if not self._signature_matches(signature, body):
            raise Rejected(HTTPStatus.UNAUTHORIZED, "signature does not match the body and the configured secret")
        nonce = _nonce(nonce_text)
        event, job_id, state = parse_delivery(body)
        if not self._nonces(nonce):
            raise Rejected(HTTPStatus.UNAUTHORIZED, f"nonce {nonce} is not greater than the last accepted one (replay)")
        log.info("webhook_received", webhook_event=event, job_id=job_id, job_state=state, nonce=nonce)
        self._on_job(job_id, state)
        return job_id, state

    def _signature_matches(self, given: str, body: bytes) -> bool:
        given = given.strip()
        if given[: len(_SIGNATURE_PREFIX)].lower() == _SIGNATURE_PREFIX:
            given = given[len(_SIGNATURE_PREFIX):]
        expected = sign(self._secret, body)
        return hmac.compare_digest(expected.encode("ascii"), given.lower().encode("latin-1", "replace"))


def _nonce(text: str) -> int:
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or len(digits) > _MAX_NONCE_DIGITS:
        raise Rejected(HTTPStatus.UNAUTHORIZED, "nonce is not a non-negative integer")
    return int(digits)


def _listen_address(listen: str) -> tuple[str, int]:
    """``host:port`` with port 0 allowed (a free port, for tests); ``[::1]:8787`` for IPv6."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError("webhook.listen", f"expected host:port, got {listen!r}")
    return host.strip("[]"), int(port)


def _handler_for(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = SOCKET_TIMEOUT_SECONDS
        server_version = "deepva-watch-webhook"
        sys_version = ""

        def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
            if not receiver.accepts_path(self.path):
                self._answer(HTTPStatus.NOT_FOUND, "no such path")
                return
            length_text = self.headers.get("Content-Length")
            if length_text is None or not length_text.strip().isdigit():
                self._reject(Rejected(HTTPStatus.LENGTH_REQUIRED, "no Content-Length"))
                return
            length = int(length_text)
            if length > receiver.max_body_bytes:
                self.close_connection = True  # the body stays unread: do not let it be taken for the next request
                self._reject(Rejected(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body of {length} bytes is over the limit"))
                return
            try:
                body = self.rfile.read(length)
            except OSError:
                self._reject(Rejected(HTTPStatus.REQUEST_TIMEOUT, "body not received in time"))
                return
            if len(body) != length:
                self._reject(Rejected(HTTPStatus.BAD_REQUEST, "body shorter than its Content-Length"))
                return
            try:
                receiver.handle(self.headers, body)
            except Rejected as rejected:
                self._reject(rejected)
                return
            except Exception:  # the daemon's callback failed: polling will still find the job
                log.exception("webhook_callback_failed")
                self._answer(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
                return
            self._answer(HTTPStatus.OK, "ok")

        def _method_not_allowed(self) -> None:
            self._answer(HTTPStatus.METHOD_NOT_ALLOWED, "only POST")

        do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = _method_not_allowed  # noqa: N815

        def _reject(self, rejected: Rejected) -> None:
            log.warning("webhook_rejected", status=int(rejected.status), reason=rejected.reason,
                        remote=self.client_address[0], path=urlsplit(self.path).path)
            # 401 says nothing about which check failed; the log line tells the operator.
            detail = "unauthorized" if rejected.status == HTTPStatus.UNAUTHORIZED else rejected.reason
            self._answer(rejected.status, detail)

        def _answer(self, status: HTTPStatus, message: str) -> None:
            payload = json.dumps({"status": int(status), "message": message}).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the signature http.server calls
            log.debug("webhook_http", line=format % args)

    return Handler
