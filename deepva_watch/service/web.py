"""What the daemon serves on ``metrics.listen``: ``/metrics`` (Prometheus) and ``/healthz`` (JSON: 200 ok or degraded,
503 unhealthy, with the reasons), as one WSGI application for :class:`~deepva_watch.listener.Listener`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from deepva_watch.listener import App
from deepva_watch.service.health import Health
from deepva_watch.service.metrics import Metrics


def _reply(start_response: Callable[..., Any], status: HTTPStatus, content_type: str, body: bytes,
           method: str) -> Iterable[bytes]:
    start_response(f"{status.value} {status.phrase}", [
        ("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
    return [] if method == "HEAD" else [body]


def web_app(metrics: Metrics, health: Health) -> App:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        if method not in ("GET", "HEAD"):
            return _reply(start_response, HTTPStatus.METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", b"GET only\n",
                          method)
        if path == "/metrics":
            return _reply(start_response, HTTPStatus.OK, CONTENT_TYPE_LATEST, metrics.exposition(), method)
        if path == "/healthz":
            report = health.check()
            status = HTTPStatus.OK if report.healthy else HTTPStatus.SERVICE_UNAVAILABLE
            return _reply(start_response, status, "application/json",
                          json.dumps(report.as_json()).encode() + b"\n", method)
        return _reply(start_response, HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8",
                      b"not found: try /metrics or /healthz\n", method)

    return app
