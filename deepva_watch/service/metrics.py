"""The daemon's Prometheus metrics (served with /healthz on ``metrics.listen``, see :mod:`.web`).

The metrics live in their own ``CollectorRegistry``, not prometheus-client's global one, so several daemons in one
test process never share counters. What the ledger already knows (assets by folder and state, the backlog) is read
from it at scrape time by a custom collector instead of being mirrored into gauges that could drift from the truth;
only events the ledger does not keep (bytes sent, API calls, job durations) are counted here.

Every node of a shared ledger serves its own ``/metrics``; each sample carries the node's name as a ``node`` label, so
series of two nodes never merge, even when Prometheus finds them under one address (a proxy, a moved virtual IP).
prometheus-client has no constant labels: :class:`_NodeLabelled` adds it to each sample as the registry collects.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from deepva_watch import __version__
from deepva_watch.flow.budget import BudgetState
from deepva_watch.ledger.model import Node
from deepva_watch.states import FINAL
from deepva_watch.service.health import FolderState

log = structlog.get_logger("deepva_watch.metrics")
_T = TypeVar("_T")

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
        unnamed = GaugeMetricFamily(
            "deepva_watch_names_skipped", "Files a folder's last scan skipped because their names are not UTF-8.",
            labels=["folder"],
        )
        now = self.clock()
        for status in statuses:
            if status.last_scan_at is not None:
                age.add_metric([status.folder], max(0.0, now - status.last_scan_at))
            paused.add_metric([status.folder], 1 if status.paused else 0)
            degraded.add_metric([status.folder], 1 if status.warning else 0)
            missed.add_metric([status.folder], status.events_missed)
            unnamed.add_metric([status.folder], status.names_skipped)
        yield age
        yield paused
        yield degraded
        yield missed
        yield unnamed


def _read_ledger(read: Callable[[], _T | None]) -> _T | None:
    """What ``read`` gets from the ledger at scrape time; None (and a warning) when the ledger cannot answer, whose
    state health reports."""
    try:
        return read()
    except Exception as error:
        log.warning("metrics_ledger_unreadable", error=repr(error)[:300])
        return None


class _BudgetCollector(Collector):
    """Today's spending and whether a cap is reached, read from the ledger at scrape time (nothing when no cap)."""

    def __init__(self, budget: Callable[[], BudgetState | None]) -> None:
        self.budget = budget

    def collect(self) -> Iterator[Metric]:
        state = _read_ledger(self.budget)
        if state is None:
            return
        spent = GaugeMetricFamily("deepva_watch_budget_spent", "Handed to DeepVA today: video minutes and images.",
                                  labels=["kind"])
        spent.add_metric(["video_minutes"], state.video_minutes)
        spent.add_metric(["images"], state.images)
        yield spent
        yield GaugeMetricFamily("deepva_watch_budget_reached", "1 while a daily cap is reached (work waits).",
                                value=1 if state.reached else 0)


class _NodesCollector(Collector):
    """How many nodes work on the ledger now (not left, a heartbeat within their lease), read at scrape time."""

    def __init__(self, nodes: Callable[[], Sequence[Node]], clock: Callable[[], float]) -> None:
        self.nodes = nodes
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        nodes = _read_ledger(self.nodes)
        if nodes is None:
            return
        now = self.clock()
        yield GaugeMetricFamily("deepva_watch_nodes_alive",
                                "Daemons working on the ledger: not left, heartbeat within their lease.",
                                value=sum(1 for node in nodes if node.alive(now)))


class _NodeLabelled(Collector):
    """Every metric of ``source`` with the label ``node`` added to each of its samples."""

    def __init__(self, source: CollectorRegistry, node: str) -> None:
        self.source = source
        self.node = node

    def collect(self) -> Iterable[Metric]:
        for metric in self.source.collect():
            labelled = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            for sample in metric.samples:
                labelled.add_sample(sample.name, {**sample.labels, "node": self.node}, sample.value, sample.timestamp,
                                    sample.exemplar, sample.native_histogram)
            yield labelled


class Metrics:
    """The daemon's metrics. ``clock`` is wall-clock seconds, the unit of ``FolderStatus.last_scan_at``.

    ``node``: the daemon's name among the nodes of its ledger, put on every sample as the label ``node``; empty: no
    such label (Prometheus takes an empty label value as no label anyway). ``nodes``: the ledger's nodes, for the
    gauge of those alive (None: no such gauge).
    """

    def __init__(
        self,
        *,
        ledger_counts: Callable[[], Mapping[tuple[str, str], int]],
        folder_statuses: Callable[[], Sequence[FolderState]],
        clock: Callable[[], float] = time.time,
        overdue_jobs: Callable[[], int] = lambda: 0,
        budget: Callable[[], BudgetState | None] = lambda: None,
        nodes: Callable[[], Sequence[Node]] | None = None,
        node: str = "",
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
        Gauge("deepva_watch_jobs_overdue", "DeepVA jobs running longer than overdue_job_seconds.",
              registry=self.registry).set_function(lambda: _count_or_nan(overdue_jobs))
        self.registry.register(_BudgetCollector(budget))
        self.registry.register(_LedgerCollector(ledger_counts, folder_statuses, clock))
        if nodes is not None:
            self.registry.register(_NodesCollector(nodes, clock))
        self.exported = self.registry
        """What ``/metrics`` serves: the registry, or with a node, the registry with the node's label."""
        if node:
            self.exported = CollectorRegistry(auto_describe=False)
            self.exported.register(_NodeLabelled(self.registry, node))

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
        return generate_latest(self.exported)


def _count_or_nan(count: Callable[[], int]) -> float:
    """A count read from the ledger at scrape time; NaN (with a log line) when the ledger cannot answer."""
    try:
        return float(count())
    except Exception as error:  # a scrape must not fail on it: the ledger's state is reported by health
        log.warning("metrics_ledger_unreadable", error=repr(error)[:300])
        return math.nan
