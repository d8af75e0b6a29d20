"""Fault injection: what can go wrong between a client and DeepVA, on demand and repeatable.

A :class:`FaultPlan` is a frozen description read from JSON (``EmulatorConfig.faults``, ``--faults-json``,
``POST /_emulator/faults``); a :class:`FaultInjector` rolls the dice for each request, job and upload with a
``random.Random`` seeded from the plan, so a sequential test sees the same faults on every run. Faults never touch
``/_emulator/*``: the control endpoints must keep working while everything else breaks.

Per-request rates are keyed by route template exactly as ``GET /_emulator/stats`` counts requests
(``"POST /api/v1/jobs/"``, ``"GET /api/v1/jobs/{id}/"``; a trailing slash is optional) or ``"*"`` for every route; a
specific key wins over ``"*"``. A bare number means ``{"*": number}``. JSON shape (every field optional)::

    {
      "seed": 0,
      "down": false, "down_mode": "reset" | "refuse", "down_for": null,
      "error_rate": {"*": 0.1},            # 5xx before handling, HTML body as a proxy sends it
      "error_after_rate": {},              # handled (side effects happen), then answered with an HTML 5xx
      "error_statuses": [500, 502, 503],
      "rate_limit_rate": {},  "retry_after": 1,       # 429 with Retry-After (seconds)
      "latency": {"*": 0.05} | {"*": [0.01, 0.2]},    # added before handling; fixed or uniform range
      "hang_rate": {},  "hang_seconds": 30,           # handled, then the answer is held back (client times out)
      "reset_rate": {},  "reset_after_bytes": 65536,  # read part of the body, then TCP RST; not handled
      "truncate_rate": {},                 # handled, answered with the first half of the JSON body
      "malformed_rate": {},                # handled, answered with '{"id": ' (status unchanged)
      "job_failure_rate": 0, "job_failure_every": 0,  # new jobs end "failed" (rate, or every Nth job created)
      "job_failure_errors": ["emulated processing failure"],
      "stuck_job_rate": 0,                 # new jobs stay "processing" forever
      "upload_failed_rate": 0              # uploads answered with uploaded: false, upload_failed: true
    }

Only one request fault applies per request, checked in the order reset, error, rate_limit, hang, error_after,
truncate, malformed; latency comes on top. ``down`` with ``down_mode: "reset"`` resets every connection once its
request head is read; ``"refuse"`` closes the listening socket so connections are refused, and needs ``down_for``
(seconds until it reopens by itself) when set over HTTP, because the control endpoint is unreachable meanwhile.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from http import HTTPStatus
from typing import Any

REQUEST_FAULTS = ("reset", "error", "rate_limit", "hang", "error_after", "truncate", "malformed")
"""The order in which request faults are tried; the first that fires is the one injected."""

_RATE_FIELDS = {kind: f"{kind}_rate" for kind in REQUEST_FAULTS}
DOWN_MODES = ("reset", "refuse")


def _rate_map(name: str, value: Any) -> dict[str, float]:
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a number or an object of route → number")
    if isinstance(value, (int, float)):
        value = {"*": value}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: expected a number or an object of route → number")
    rates: dict[str, float] = {}
    for route, rate in value.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(f"{name}[{route!r}]: a rate between 0 and 1 is required")
        rates[_route_key(str(route))] = float(rate)
    return rates


def _latency_map(value: Any) -> dict[str, tuple[float, float]]:
    if isinstance(value, (int, float, list)) and not isinstance(value, bool):
        value = {"*": value}
    if not isinstance(value, Mapping):
        raise ValueError("latency: expected seconds, [min, max] or an object of route → either")
    latencies: dict[str, tuple[float, float]] = {}
    for route, seconds in value.items():
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
            low = high = float(seconds)
        elif (
            isinstance(seconds, (list, tuple))
            and len(seconds) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in seconds)
        ):
            low, high = float(seconds[0]), float(seconds[1])
        else:
            raise ValueError(f"latency[{route!r}]: expected seconds or [min, max]")
        if not 0 <= low <= high:
            raise ValueError(f"latency[{route!r}]: need 0 <= min <= max")
        latencies[_route_key(str(route))] = (low, high)
    return latencies


def _route_key(route: str) -> str:
    """``"POST /api/v1/jobs"`` and ``"POST /api/v1/jobs/"`` name the same route."""
    return route if route == "*" else route.strip().rstrip("/")


def _lookup(table: Mapping[str, Any], route: str) -> Any:
    key = _route_key(route)
    return table[key] if key in table else table.get("*")


@dataclass(frozen=True)
class FaultPlan:
    """Which faults to inject; the default injects none. Build from JSON with :meth:`from_json`."""

    seed: int = 0
    down: bool = False
    down_mode: str = "reset"
    down_for: float | None = None
    error_rate: Mapping[str, float] = field(default_factory=dict)
    error_after_rate: Mapping[str, float] = field(default_factory=dict)
    error_statuses: tuple[int, ...] = (500, 502, 503)
    rate_limit_rate: Mapping[str, float] = field(default_factory=dict)
    retry_after: int = 1
    latency: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    hang_rate: Mapping[str, float] = field(default_factory=dict)
    hang_seconds: float = 30.0
    reset_rate: Mapping[str, float] = field(default_factory=dict)
    reset_after_bytes: int = 64 * 1024
    truncate_rate: Mapping[str, float] = field(default_factory=dict)
    malformed_rate: Mapping[str, float] = field(default_factory=dict)
    job_failure_rate: float = 0.0
    job_failure_every: int = 0
    job_failure_errors: tuple[str, ...] = ("emulated processing failure",)
    stuck_job_rate: float = 0.0
    upload_failed_rate: float = 0.0

    @classmethod
    def from_json(cls, data: Mapping[str, Any], base: FaultPlan | None = None) -> FaultPlan:
        """Fields given in ``data`` replace those of ``base`` (default: no faults); unknown keys are an error."""
        if not isinstance(data, Mapping):
            raise ValueError("faults: expected a JSON object")
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"faults: unknown field(s) {', '.join(unknown)}")
        changes: dict[str, Any] = {}
        for name, value in data.items():
            changes[name] = _parse_field(name, value)
        return replace(base or cls(), **changes)

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "latency":
                value = {route: [low, high] for route, (low, high) in value.items()}
            elif isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            result[item.name] = value
        return result


def _parse_field(name: str, value: Any) -> Any:  # noqa: C901 - one branch per field keeps the messages specific
    if name.endswith("_rate") and name in _RATE_FIELDS.values():
        return _rate_map(name, value)
    if name == "latency":
        return _latency_map(value)
    if name in ("job_failure_rate", "stuck_job_rate", "upload_failed_rate"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{name}: a rate between 0 and 1 is required")
        return float(value)
    if name in ("seed", "job_failure_every", "reset_after_bytes", "retry_after"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: a non-negative integer is required")
        return value
    if name == "down":
        if not isinstance(value, bool):
            raise ValueError("down: true or false is required")
        return value
    if name == "down_mode":
        if value not in DOWN_MODES:
            raise ValueError(f"down_mode: one of {', '.join(DOWN_MODES)} is required")
        return value
    if name in ("down_for", "hang_seconds"):
        if value is None and name == "down_for":
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{name}: a non-negative number of seconds is required")
        return float(value)
    if name == "error_statuses":
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(status, int) and 500 <= status <= 599 for status in value)
        ):
            raise ValueError("error_statuses: a non-empty list of 5xx status codes is required")
        return tuple(value)
    if name == "job_failure_errors":
        if not isinstance(value, list) or not value or not all(isinstance(text, str) and text for text in value):
            raise ValueError("job_failure_errors: a non-empty list of strings is required")
        return tuple(value)
    raise ValueError(f"faults: unknown field {name}")  # pragma: no cover - from_json checks names first


@dataclass(frozen=True)
class RequestFault:
    """What to do to one request: ``kind`` is one of :data:`REQUEST_FAULTS` or None; latency is added either way."""

    kind: str | None = None
    latency: float = 0.0
    status: int = 0


JobFate = tuple[str, tuple[str, ...]]
"""A new job's outcome (see :mod:`.timeline`) and the errors it will report."""


class FaultInjector:
    """Holds the current plan, the seeded random source and the count of every fault injected, by kind."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self._lock = threading.Lock()
        self._plan = plan or FaultPlan()
        self._random = random.Random(self._plan.seed)
        self._injected: Counter[str] = Counter()

    @property
    def plan(self) -> FaultPlan:
        with self._lock:
            return self._plan

    def replace_plan(self, plan: FaultPlan, *, reseed: bool) -> None:
        with self._lock:
            self._plan = plan
            if reseed:
                self._random = random.Random(plan.seed)

    def injected(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._injected.items()))

    def count(self, kind: str) -> None:
        with self._lock:
            self._injected[kind] += 1

    def for_request(self, route: str) -> RequestFault:
        with self._lock:
            plan = self._plan
            latency = 0.0
            span = _lookup(plan.latency, route)
            if span is not None:
                low, high = span
                latency = low if low == high else self._random.uniform(low, high)
                if latency > 0:
                    self._injected["latency"] += 1
            for kind in REQUEST_FAULTS:
                rate = _lookup(getattr(plan, _RATE_FIELDS[kind]), route)
                if rate and self._random.random() < rate:
                    self._injected[kind] += 1
                    status = self._random.choice(plan.error_statuses) if kind in ("error", "error_after") else 0
                    return RequestFault(kind, latency, status)
            return RequestFault(None, latency)

    def job_fate(self, sequence: int) -> JobFate:
        """``sequence`` counts jobs created from 1, so ``job_failure_every: 3`` fails jobs 3, 6, 9, …"""
        with self._lock:
            plan = self._plan
            every = plan.job_failure_every
            if (every and sequence % every == 0) or (
                plan.job_failure_rate and self._random.random() < plan.job_failure_rate
            ):
                self._injected["job_failed"] += 1
                return "failed", plan.job_failure_errors
            if plan.stuck_job_rate and self._random.random() < plan.stuck_job_rate:
                self._injected["job_stuck"] += 1
                return "stuck", ()
            return "completed", ()

    def upload_fails(self) -> bool:
        with self._lock:
            rate = self._plan.upload_failed_rate
            if rate and self._random.random() < rate:
                self._injected["upload_failed"] += 1
                return True
            return False


def proxy_error_page(status: int) -> bytes:
    """What nginx and friends send when the application behind them fails: HTML, not the API's JSON."""
    title = f"{status} {HTTPStatus(status).phrase}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        f"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    ).encode("ascii")
