"""Signed webhook deliveries, as DeepVA sends them when a job starts, completes or fails.

Job states are computed lazily from the clock (see :mod:`.timeline`), so nothing "happens" when a job completes. A
:class:`WebhookTicker` therefore looks at the jobs that asked for webhooks every ``interval`` seconds and queues one
delivery per subscribed event the job has reached since the last look. A job that jumps from ``waiting`` straight to
``completed`` between two looks still announces ``on_started`` first.

A delivery is ``POST <callback>`` with the body ``{"event": "job.<module>.on_completed", "timestamp": <epoch float>,
"data": {"job": <the job as GET /jobs/{id}/ shows it>}}``, the hex HMAC-SHA512 of the exact body bytes under the
configured secret in one header and an integer nonce in another (DeepVA does not publish the header names, so both are
configurable). The nonce starts at the process's start time in milliseconds and grows by one per delivery, so it keeps
increasing across emulator restarts too. One sender thread delivers in nonce order, so a receiver never sees a smaller
nonce after a larger one.

As on DeepVA a webhook is a hint: nothing is retried, a failure is only counted (``webhooks_failed``). Only
``on_started``, ``on_completed`` and ``on_failed`` are sent, only for modules the job runs, and only to loopback
callbacks (others are counted as ``webhooks_skipped``): the emulator never connects anywhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import render
from .fetch import is_loopback_host
from .state import EmulatorState, JobRecord

log = logging.getLogger("deepva_watch.emulator")

_FINAL_EVENTS = {"completed": "on_completed", "failed": "on_failed"}


def sign(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha512).hexdigest()


@dataclass(frozen=True)
class Delivery:
    callback: str
    event: str
    body: bytes


@dataclass(frozen=True)
class WebhookSettings:
    secret: bytes
    signature_header: str
    nonce_header: str
    timeout: float


class WebhookSender:
    """Delivers queued webhooks one at a time on its own thread, so request handling never waits for a receiver."""

    def __init__(self, settings: WebhookSettings, count: Callable[[str], None]) -> None:
        self._settings = settings
        self._count = count
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._nonce = int(time.time() * 1000)
        self._thread = threading.Thread(target=self._run, name="deepva-emulator-webhooks", daemon=True)
        self._thread.start()

    def enqueue(self, delivery: Delivery) -> None:
        self._queue.put(delivery)

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (delivery := self._queue.get()) is not None:
            self._nonce += 1
            try:
                delivered = self._post(delivery, self._nonce)
            except (OSError, http.client.HTTPException, ValueError) as problem:
                log.info("webhook %s to %s failed: %s", delivery.event, delivery.callback, problem.__class__.__name__)
                delivered = False
            self._count("webhooks_delivered" if delivered else "webhooks_failed")

    def _post(self, delivery: Delivery, nonce: int) -> bool:
        parts = urlsplit(delivery.callback)
        settings = self._settings
        connection_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        connection = connection_type(parts.hostname or "", parts.port, timeout=settings.timeout)
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request(
                "POST",
                target,
                body=delivery.body,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "deepva-emulator/0.1",
                    settings.signature_header: sign(settings.secret, delivery.body),
                    settings.nonce_header: str(nonce),
                },
            )
            response = connection.getresponse()
            response.read()
            return 200 <= response.status < 300
        finally:
            connection.close()


class WebhookTicker:
    """Looks for jobs that reached a new phase every ``interval`` seconds until :meth:`stop`."""

    def __init__(
        self, state: EmulatorState, sender: WebhookSender, origin: Callable[[], str], interval: float = 0.05
    ) -> None:
        self._state = state
        self._sender = sender
        self._origin = origin
        self._interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deepva-emulator-webhook-ticker", daemon=True)

    def start(self) -> WebhookTicker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._sender.stop()

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self.tick()
            except Exception:  # a bug here must not silently end all deliveries
                log.exception("webhook ticker failed")

    def tick(self) -> None:
        state = self._state
        now = state.now()
        for job in state.jobs_awaiting_webhooks():
            phase = job.timeline.phase_at(now)
            due: list[str] = []
            if phase.state != "waiting" and "on_started" not in job.announced:
                due.append("on_started")
            final = _FINAL_EVENTS.get(phase.state)
            if final is not None:
                due.append(final)
            if not due:
                continue
            job.announced.update(due)
            if final is not None:
                state.webhooks_finished(job)
            for suffix in due:
                self._announce(job, suffix, now)

    def _announce(self, job: JobRecord, suffix: str, now: float) -> None:
        assert job.webhook is not None
        callback = str(job.webhook.get("callback", ""))
        events = [str(event) for event in job.webhook.get("events", [])]
        wanted = [event for event in events if _module_of(event, suffix) in job.modules]
        if not wanted:
            return
        if not is_loopback_host(urlsplit(callback).hostname):
            for _ in wanted:
                self._state.count_webhook("webhooks_skipped")
            return
        snapshot = render.job_json(self._state, job, self._origin())
        for event in wanted:
            body = json.dumps(
                {"event": event, "timestamp": now, "data": {"job": snapshot}}, ensure_ascii=False
            ).encode("utf-8")
            self._sender.enqueue(Delivery(callback, event, body))


def _module_of(event: str, suffix: str) -> str | None:
    """``job.face_recognition.on_completed`` → ``face_recognition`` when the suffix matches, else None."""
    prefix, dot, rest = event.partition(".")
    module, dot2, name = rest.rpartition(".")
    if prefix != "job" or not dot or not dot2 or name != suffix:
        return None
    return module
