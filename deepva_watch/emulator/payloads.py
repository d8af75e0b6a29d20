"""Checking the body of ``POST /jobs/`` before anything is created.

All problems are collected and returned together, as Django REST framework (which the real service appears to use)
does, so a client developer sees every mistake in one round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


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
    if webhook is not None and not isinstance(webhook, dict):
        errors.append("webhook: must be an object")
    if errors:
        raise InvalidRequest(errors)
    return JobRequest(sources=tuple(sources), modules=modules, tag=tag, webhook=webhook)
