"""What the daemon serves on ``metrics.listen``: ``/metrics`` (Prometheus), ``/healthz`` (JSON: 200 ok or degraded,
503 unhealthy, with the reasons), ``/events`` (finished files, :mod:`.events`) and the status page (:mod:`.page`), as
one WSGI application for :class:`~deepva_watch.listener.Listener`.

Every answer forbids what a page of ours never needs: scripts, frames, foreign forms, content sniffing, caching.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from deepva_watch.ledger import Ledger
from deepva_watch.listener import App
from deepva_watch.service.events import BadRequest, events_page
from deepva_watch.service.health import Health
from deepva_watch.service.metrics import Metrics
from deepva_watch.service.page import Response, StatusPage

log = structlog.get_logger("deepva_watch.web")

SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
)
TEXT = "text/plain; charset=utf-8"


def _reply(start_response: Callable[..., Any], response: Response, method: str) -> Iterable[bytes]:
    status = response.status
    start_response(f"{status.value} {status.phrase}", [
        ("Content-Type", response.content_type), ("Content-Length", str(len(response.body))), *SECURITY_HEADERS,
        *response.headers])
    return [] if method == "HEAD" else [response.body]


def web_app(metrics: Metrics, health: Health, page: StatusPage | None = None, ledger: Ledger | None = None,
            roots: Callable[[], Mapping[str, Path]] = dict) -> App:
    """``page``: the status page at ``/`` (None: none); ``ledger``: the ``/events`` feed (None: none); ``roots``:
    where the folders the ledger names are on this node (a folder with an ``id``)."""

    def answer(environ: dict[str, Any]) -> Response:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        if path in ("/metrics", "/healthz", "/events"):
            if method not in ("GET", "HEAD"):
                return Response(HTTPStatus.METHOD_NOT_ALLOWED, b"GET only\n", TEXT)
            if path == "/metrics":
                return Response(HTTPStatus.OK, metrics.exposition(), CONTENT_TYPE_LATEST)
            if path == "/events":
                return _events(ledger, environ.get("QUERY_STRING", ""), roots())
            report = health.check()
            status = HTTPStatus.OK if report.healthy else HTTPStatus.SERVICE_UNAVAILABLE
            return Response(status, json.dumps(report.as_json()).encode() + b"\n", "application/json")
        if page is not None:
            try:
                response = page.handle(environ)
            except Exception:  # a ledger that cannot answer (locked, removed): say so, keep serving /healthz
                log.error("page_failed", path=path, trace=traceback.format_exc(limit=8))
                return Response(HTTPStatus.SERVICE_UNAVAILABLE, b"the status page cannot be shown right now; "
                                b"see /healthz and the journal\n", TEXT)
            if response is not None:
                return response
        return Response(HTTPStatus.NOT_FOUND, b"not found: try /metrics or /healthz\n", TEXT)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return _reply(start_response, answer(environ), environ.get("REQUEST_METHOD", "GET"))

    return app


def _events(ledger: Ledger | None, query: str, roots: Mapping[str, Path]) -> Response:
    if ledger is None:
        return Response(HTTPStatus.NOT_FOUND, b"no event feed here\n", TEXT)
    try:
        page = events_page(ledger, query, roots)
    except BadRequest as error:
        return Response(HTTPStatus.BAD_REQUEST, f"{error}\n".encode(), TEXT)
    return Response(HTTPStatus.OK, json.dumps(page).encode() + b"\n", "application/json")
