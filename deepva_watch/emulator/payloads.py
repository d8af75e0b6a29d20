"""Checking the body of ``POST /jobs/`` before anything is created.

All problems are collected and returned together, as Django REST framework (which the real service appears to use)
does, so a client developer sees every mistake in one round trip.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

WEBHOOK_EVENT = re.compile(r"^job\.[A-Za-z0-9_]+\.on_(started|completed|failed|detailed_result)$")
"""The documented events: ``job.<module>.on_completed | on_started | on_failed | on_detailed_result``."""


class InvalidRequest(ValueError):
    """A 400: the request is wrong and repeating it will not help. ``errors`` are safe to return to the client."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class JobRequest:
    sources: tuple[str, ...]
    modules: Mapping[str, Mapping[str, Any]]
    tag: str
    webhook: Mapping[str, Any] | None


def parse_job_request(body: Any) -> JobRequest:
    if not isinstance(body, dict):
        raise InvalidRequest(["request body must be a JSON object"])
    errors: list[str] = []
    sources = body.get("sources")
    if not isinstance(sources, list) or not sources:
        errors.append("sources: a non-empty list of source URLs is required")
    elif not all(isinstance(source, str) and source for source in sources):
        errors.append("sources: every source must be a non-empty string")
    modules = body.get("modules")
    if not isinstance(modules, dict) or not modules:
        errors.append("modules: a non-empty object mapping module names to their options is required")
    else:
        for name, options in modules.items():
            if not isinstance(options, dict):
                errors.append(f"modules.{name}: options must be an object")
    tag = body.get("tag", "")
    if tag is None:
        tag = ""
    if not isinstance(tag, str):
        errors.append("tag: must be a string")
    webhook = body.get("webhook")
    if webhook is not None:
        errors.extend(_webhook_problems(webhook))
    if errors:
        raise InvalidRequest(errors)
    assert isinstance(sources, list) and isinstance(modules, dict)  # established above; this informs the type checker
    return JobRequest(sources=tuple(sources), modules=modules, tag=tag, webhook=webhook)


def _webhook_problems(webhook: Any) -> list[str]:
    """``{"events": ["job.<module>.on_completed", …], "callback": "https://…"}``, checked as a real server would."""
    if not isinstance(webhook, dict):
        return ["webhook: must be an object"]
    problems: list[str] = []
    callback = webhook.get("callback")
    parts = urlsplit(callback) if isinstance(callback, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        problems.append("webhook.callback: an http:// or https:// URL is required")
    events = webhook.get("events")
    if not isinstance(events, list) or not events:
        problems.append("webhook.events: a non-empty list of events is required")
    else:
        for event in events:
            if not isinstance(event, str) or not WEBHOOK_EVENT.match(event):
                problems.append(f"webhook.events: unknown event {event!r} (expected job.<module>.on_completed etc.)")
    return problems
