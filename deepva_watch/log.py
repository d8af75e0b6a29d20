"""Logging: structlog configured once, at the entry point.

JSON lines when stderr is not a terminal (journald and log shippers read them as they are), readable colours when it
is. Every secret the process knows is registered here and cut out of every event, whatever field it hides in.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any, MutableMapping, TextIO

import structlog

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
REDACTED = "[redacted]"


def register_secret(value: str) -> None:
    """Make sure ``value`` never reaches a log line. Short values are ignored: they would redact ordinary words."""
    text = value.reveal() if hasattr(value, "reveal") else str(value)
    if len(text) >= 6:
        with _secrets_lock:
            _secrets.add(text)


def _scrub(value: Any, secrets: frozenset[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {key: _scrub(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub(item, secrets) for item in value)
    if isinstance(value, BaseException):
        return _scrub(repr(value), secrets)
    return value


def scrub(text: str) -> str:
    """``text`` with every registered secret cut out: for error text that is stored (the ledger) as well as logged."""
    with _secrets_lock:
        secrets = frozenset(_secrets)
    return _scrub(text, secrets) if secrets else text


def redact_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    with _secrets_lock:
        secrets = frozenset(_secrets)
    if not secrets:
        return event
    return {key: _scrub(value, secrets) for key, value in event.items()}


#: syslog priorities (sd-daemon(3)): journald files a line that starts with ``<N>`` under priority N.
_PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2, "exception": 3}


def journal_priority(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Keep the level for :func:`_with_priority`, which prefixes the rendered line."""
    event["_priority"] = _PRIORITIES.get(str(event.get("level", "info")), 6)
    return event


class _Prefixed:
    """A renderer whose lines start with the journal's priority prefix, so that ``journalctl -p warning`` works."""

    def __init__(self, renderer: Any) -> None:
        self.renderer = renderer

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        priority = event.pop("_priority", 6)
        return f"<{priority}>{self.renderer(logger, name, event)}"


def _to_journal(stream: TextIO) -> bool:
    """systemd sets ``JOURNAL_STREAM`` to the device and inode of stderr when stderr is the journal."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def configure(level: str = "info", stream: TextIO | None = None, *, json: bool | None = None) -> None:
    """structlog for our own lines, and the standard library's logging (waitress, urllib3) through the same
    processors, so every line is one JSON object (or one readable line on a terminal)."""
    stream = stream or sys.stderr
    as_json = json if json is not None else not stream.isatty()
    renderer: Any = structlog.processors.JSONRenderer(ensure_ascii=False) if as_json else structlog.dev.ConsoleRenderer(
        colors=True
    )
    if _to_journal(stream):
        renderer = _Prefixed(renderer)
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
        structlog.processors.format_exc_info,
    ]
    if isinstance(renderer, _Prefixed):
        shared.append(journal_priority)
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
    ))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
