"""What a step can decide about a row. A step returns one of these and never writes to the ledger itself: the runner
commits it (:mod:`deepva_watch.flow.runner`), with the same retry policy and the same log line for every stage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deepva_watch.states import State


@dataclass(frozen=True)
class Advance:
    """The step is done: move to ``to`` and record ``changes``."""

    to: State
    changes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Wait:
    """Nothing wrong, just not yet (still settling, job still running): look again at ``until``."""

    until: float
    changes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Retry:
    """Failed in a way that may pass: try again after a backoff, or after ``delay`` if the server said so.

    ``counts`` is False for failures that say nothing about this file (a refused key, DeepVA down, a full disk), so
    that an outage cannot use up a file's attempts.
    """

    error: str
    delay: float | None = None
    counts: bool = True
    changes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fail:
    """Failed for good, or until a person intervenes (``retryable``: ``deepva-watch retry`` may help)."""

    error: str
    retryable: bool = False
    changes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Changed:
    """The file on disk is not the version this row describes: the runner records the version seen (a settling row
    takes it and waits again; any other row is superseded by a new one)."""

    size: int
    mtime_ns: int
    why: str


Outcome = Advance | Wait | Retry | Fail | Changed


def gone(reason: str = "the file disappeared") -> Advance:
    return Advance(State.GONE, {"last_error": reason})
