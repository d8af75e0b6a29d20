"""Prometheus metrics and /healthz on one small HTTP endpoint (``metrics.listen``).

The metrics live in their own ``CollectorRegistry``, not prometheus-client's global one, so several daemons in one
test process never share counters. What the ledger already knows (assets by folder and state, the backlog) is read
from it at scrape time by a custom collector instead of being mirrored into gauges that could drift from the truth;
only events the ledger does not keep (bytes sent, API calls, job durations) are counted here.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator, Mapping, Sequence

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from deepva_watch import __version__
from deepva_watch.states import FINAL
from deepva_watch.config import host_port
from deepva_watch.service.health import FolderState, Health

log = structlog.get_logger("deepva_watch.metrics")

#: DeepVA jobs take seconds for a photo and up to hours for long video.
JOB_DURATION_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, float("inf"))


def _status_label(status: int | None) -> str:
    return "none" if status is None else str(status)


class _LedgerCollector(Collector):
    """Reads the ledger and the folder watches when Prometheus scrapes, never in between."""

    def __init__(
        self,
        counts: Callable[[], Mapping[tuple[str, str], int]],
        folder_statuses: Callable[[], Sequence[FolderState]],
        clock: Callable[[], float],
    ) -> None:
        self.counts = counts
        self.folder_statuses = folder_statuses
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        try:
            counts = self.counts()
        except Exception as error:  # a locked or broken ledger must not take the whole scrape down
            log.warning("metrics_ledger_unreadable", error=repr(error)[:300])
        else:
            assets = GaugeMetricFamily("deepva_watch_assets", "Files in the ledger by folder and state.", labels=["folder", "state"])
            backlog = 0
            for (folder, state), count in sorted(counts.items()):
                assets.add_metric([folder, state], count)
                if state not in FINAL:
                    backlog += count
            yield assets
            yield GaugeMetricFamily(
                "deepva_watch_backlog_files", "Files not yet in a final state (published, failed, rejected, gone, superseded).",
                value=backlog,
            )
        statuses = self.folder_statuses()
        age = GaugeMetricFamily(
            "deepva_watch_folder_last_scan_age_seconds", "Seconds since each folder's last complete scan.", labels=["folder"]
        )
        paused = GaugeMetricFamily("deepva_watch_folder_paused", "1 while a folder is paused (its share is missing).", labels=["folder"])
        degraded = GaugeMetricFamily(
            "deepva_watch_folder_degraded", "1 while a folder works but not as configured (events went deaf: polled).",
            labels=["folder"],
        )
        missed = CounterMetricFamily(
            "deepva_watch_events_missed", "Files a periodic reconcile found that no file-system event announced.",
            labels=["folder"],
        )
        now = self.clock()
        for status in statuses:
            if status.last_scan_at is not None:
                age.add_metric([status.folder], max(0.0, now - status.last_scan_at))
            paused.add_metric([status.folder], 1 if status.paused else 0)
            degraded.add_metric([status.folder], 1 if status.warning else 0)
            missed.add_metric([status.folder], status.events_missed)
        yield age
        yield paused
        yield degraded
        yield missed


class Metrics:
    """The daemon's metrics. ``clock`` is wall-clock seconds, the unit of ``FolderStatus.last_scan_at``."""

    def __init__(
        self,
        *,
        ledger_counts: Callable[[], Mapping[tuple[str, str], int]],
        folder_statuses: Callable[[], Sequence[FolderState]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        Info("deepva_watch_build", "Version of deepva-watch.", registry=self.registry).info({"version": __version__})
        self._uploaded = Counter(
            "deepva_watch_uploaded_bytes", "Bytes uploaded to DeepVA storage.", registry=self.registry
        )
        self._requests = Counter(
            "deepva_watch_api_requests", "DeepVA API calls by method, route and HTTP status ('none': no answer).",
            ["method", "route", "status"], registry=self.registry,
        )
        self._errors = Counter(
            "deepva_watch_api_errors", "Failed DeepVA API calls by method and HTTP status ('none': no answer).",
            ["method", "status"], registry=self.registry,
        )
        self._jobs = Histogram(
            "deepva_watch_job_duration_seconds", "From job creation to its final state, by that state.",
            ["state"], buckets=JOB_DURATION_BUCKETS, registry=self.registry,
        )
        self.registry.register(_LedgerCollector(ledger_counts, folder_statuses, clock))

    def uploaded_bytes(self, count: int) -> None:
        self._uploaded.inc(count)

    def api_call(self, method: str, route: str, status: int | None) -> None:
        """One HTTP exchange with DeepVA. ``route`` is the path template (``/jobs/{id}/``), never a concrete id, so
        the number of series stays bounded."""
        self._requests.labels(method, route, _status_label(status)).inc()
        if status is None or status >= 400:
            self._errors.labels(method, _status_label(status)).inc()

    def job_finished(self, seconds: float, state: str) -> None:
        self._jobs.labels(state).observe(max(0.0, seconds))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """``GET /metrics`` (Prometheus text format) and ``GET /healthz`` (JSON; 200 healthy, 503 with reasons)."""

    def __init__(self, host: str, port: int, metrics: Metrics, health: Health) -> None:
        """``port`` 0 lets the system pick one (tests); see :attr:`address`."""
        self.metrics = metrics
        self.health = health
        handler = _handler(metrics, health)
        server_class = _Server6 if ":" in host else _Server
        self._server = server_class((host, port), handler)
        self._thread: threading.Thread | None = None

    @classmethod
    def from_listen(cls, listen: str, metrics: Metrics, health: Health) -> MetricsServer:
        """From the validated ``metrics.listen`` setting (``host:port``, ``[::1]:port`` for IPv6)."""
        return cls(*host_port(listen), metrics, health)

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens; with port 0 in ``listen`` this is the port the system picked."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> MetricsServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()
        log.info("metrics_listening", host=self.address[0], port=self.address[1])
        return self

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever, which only runs once started
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()


def _handler(metrics: Metrics, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = f"deepva-watch/{__version__}"

        def do_GET(self) -> None:  # noqa: N802 (the name http.server dispatches to)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(HTTPStatus.OK, CONTENT_TYPE_LATEST, metrics.exposition())
            elif path == "/healthz":
                report = health.check()
                status = HTTPStatus.OK if report.healthy else HTTPStatus.SERVICE_UNAVAILABLE
                self._reply(status, "application/json", json.dumps(report.as_json()).encode() + b"\n")
            else:
                self._reply(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")

        def _reply(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
            log.debug("metrics_request", request=format % args)

    return Handler
