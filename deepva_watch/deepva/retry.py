"""How long to wait before trying a DeepVA call again.

Full jitter (a uniform draw between zero and the exponential ceiling) rather than a fixed schedule, so that many
workers hitting the same outage do not come back in lock step. A server that says how long to wait (``Retry-After`` on
429 and 503) is believed, within reason: a misconfigured proxy answering "come back in a day" must not park a worker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER = 300.0


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    """Total tries per call for retryable errors (1 means no retry)."""
    base_delay: float = 0.5
    """Seconds; the ceiling for retry n (from 0) is ``base_delay * 2**n``."""
    max_delay: float = 30.0
    """Seconds; the ceiling never grows past this."""
    max_retry_after: float = MAX_RETRY_AFTER
    """Seconds; a longer ``Retry-After`` is cut to this."""
    max_inline_wait: float = 5.0
    """Seconds; a longer wait is not slept inside the call: the error is raised with its ``retry_after``, and the
    caller waits in the ledger (a worker must not sleep for a server)."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Delay before retry ``retry_number`` (0 for the first retry) when the server gave no hint."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** min(retry_number, 62)))
        return rng.uniform(0.0, ceiling)

    def delay(self, retry_number: int, rng: random.Random, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return self.backoff(retry_number, rng)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).

    Returns None for a missing or unreadable header, so the caller falls back to its own backoff.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds and seconds != float("inf") else None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    current = now or datetime.now(timezone.utc)
    return max((moment - current).total_seconds(), 0.0)
