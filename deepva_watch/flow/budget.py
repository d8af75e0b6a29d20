"""The daily budget: how much video and how many images DeepVA may be handed per day (``budget`` in the config).

What was spent is counted from the ledger (jobs created since the day began, by each file's kind and probed duration),
so a restart forgets nothing and a second reader (``status``) sees the same figure. At a cap, files of that kind wait
at upload and job creation until the day ends (their next attempt is then), nothing is failed; tracking and
publishing go on, and so do files of the other kind while its cap is not reached.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import zoneinfo
from dataclasses import dataclass

import structlog

from deepva_watch.config import BudgetConfig
from deepva_watch.flow.outcomes import Wait
from deepva_watch.flow.services import Services
from deepva_watch.ledger import Asset, Ledger

log = structlog.get_logger("deepva_watch.budget")


@dataclass(frozen=True)
class BudgetState:
    """Today's spending against the caps (a cap of None: none)."""

    config: BudgetConfig
    video_minutes: float
    images: int
    day_ends_at: float

    def left(self, kind: str | None) -> float:
        """Images, or minutes of video, that may still be handed over today."""
        if kind == "image":
            cap = self.config.images_per_day
            return math.inf if cap is None else cap - self.images
        minutes = self.config.video_minutes_per_day
        return math.inf if minutes is None else minutes - self.video_minutes

    @property
    def reached(self) -> tuple[str, ...]:
        return tuple(cap_text(self.config, kind) for kind in ("video", "image") if self.left(kind) <= 0)

    def describe(self, reached: tuple[str, ...] | None = None) -> str:
        until = dt.datetime.fromtimestamp(self.day_ends_at).astimezone().strftime("%H:%M")
        return f"budget reached until {until} ({', '.join(reached or self.reached)})"


def cap_text(config: BudgetConfig, kind: str | None) -> str:
    if kind == "image":
        return f"{config.images_per_day} images per day"
    return f"{config.video_minutes_per_day:g} video minutes per day"


def day_bounds(now: float, time_zone: str | None) -> tuple[float, float]:
    """Start and end (epoch seconds) of the day ``now`` falls in, midnight to midnight in that zone."""
    zone = zoneinfo.ZoneInfo(time_zone) if time_zone else None
    moment = dt.datetime.fromtimestamp(now, zone) if zone else dt.datetime.fromtimestamp(now).astimezone()
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    end = (start + dt.timedelta(days=1, hours=2)).replace(hour=0)  # 23- and 25-hour days included
    return start.timestamp(), end.timestamp()


def budget_state(config: BudgetConfig, ledger: Ledger, now: float) -> BudgetState | None:
    """None when no cap is set."""
    if config.video_minutes_per_day is None and config.images_per_day is None:
        return None
    start, end = day_bounds(now, config.time_zone)
    video_seconds, images = ledger.spent_since(start)
    return BudgetState(config, video_seconds / 60, images, end)


class Allowance:
    """What the budget leaves one batch of job creations, counted down as its steps go (the batch is committed only
    at its end, so the ledger does not count the files before it yet)."""

    def __init__(self, services: Services) -> None:
        self.state = budget_state(services.config.budget, services.ledger, services.clock.now())
        self.taken = {"image": 0.0, "video": 0.0}

    def take(self, asset: Asset) -> Wait | None:
        """None, and the file counted, while there is room for it; otherwise a Wait until the day ends."""
        if self.state is None:
            return None
        kind = "image" if asset.kind == "image" else "video"
        if self.state.left(kind) - self.taken[kind] <= 0:
            return wait_for_tomorrow(self.state, kind)
        self.taken[kind] += 1 if kind == "image" else (asset.media_seconds or 0) / 60
        return None


_warned: set[tuple[float, str]] = set()
_warned_lock = threading.Lock()


def wait_for_tomorrow(state: BudgetState, kind: str | None) -> Wait:
    """The file waits for the next day; the first file to meet a cap on a day logs one warning naming it."""
    reason = state.describe((cap_text(state.config, kind),))
    with _warned_lock:
        first = (state.day_ends_at, reason) not in _warned
        _warned.add((state.day_ends_at, reason))
    if first:
        log.warning("budget_reached", reason=reason, video_minutes=round(state.video_minutes, 1),
                    images=state.images, note="uploads and job creation pause, nothing fails; raise the cap and "
                    "reload to resume now")
    return Wait(state.day_ends_at, {"last_error": reason})
