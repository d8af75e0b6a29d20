"""A job's lifecycle as a pure function of time.

The real service moves jobs forward in its workers; the emulator has no workers. Instead every job remembers when it was
created, how long it queues and processes and how it will end (its ``outcome``), and each read computes where it stands
*now*. That keeps the lifecycle exact under an injected clock; the only background thread is the webhook ticker, which
merely reads these phases.

Outcomes: ``completed`` (the normal case), ``failed`` (a fetch that did not work, or an injected fault: the job ends
``failed`` at the instant it would have completed) and ``stuck`` (an injected fault: ``processing`` forever).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

OUTCOMES = ("completed", "failed", "stuck")
_STUCK_PROGRESS_CAP = 0.99


@dataclass(frozen=True)
class Phase:
    """Where a job stands at one instant; times are epoch seconds, ``None`` while not reached."""

    state: str
    progress: float
    time_started: float | None
    time_completed: float | None
    duration: float


@dataclass(frozen=True)
class Timeline:
    created_at: float
    queue_time: float
    processing_time: float
    outcome: str = "completed"

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}")

    @property
    def started_at(self) -> float:
        return self.created_at + self.queue_time

    @property
    def completed_at(self) -> float:
        return self.started_at + self.processing_time

    def is_finished(self, now: float) -> bool:
        """Reached ``completed`` or ``failed``; a stuck job never finishes."""
        return self.outcome != "stuck" and now >= self.completed_at

    def is_completed(self, now: float) -> bool:
        """Finished successfully, so results exist."""
        return self.outcome == "completed" and now >= self.completed_at

    def phase_at(self, now: float) -> Phase:
        """``waiting`` up to and including the start instant, ``processing`` while progress rises, then the outcome.

        Checking the end first is what lets a zero processing time mean "finished on the very first read".
        """
        if self.is_finished(now):
            duration = round(self.processing_time, 6)
            return Phase(self.outcome, 1.0, self.started_at, self.completed_at, duration)
        if now <= self.started_at:
            return Phase("waiting", 0.0, None, None, 0)
        elapsed = now - self.started_at
        fraction = elapsed / self.processing_time if self.processing_time > 0 else 1.0
        cap = _STUCK_PROGRESS_CAP if self.outcome == "stuck" else 1.0
        progress = min(max(fraction, 0.0), cap)
        return Phase("processing", round(progress, 4), self.started_at, None, round(elapsed, 6))

    def created_phase(self) -> Phase:
        """What the creating request sees: the job is always queued first, as on the real service."""
        return Phase("waiting", 0.0, None, None, 0)


def processing_time_for(media: Iterable[tuple[str, float]], image_seconds: float, video_ratio: float) -> float:
    """How long a job over ``media`` (``(media_type, duration)`` per source) processes.

    With ``video_ratio`` at zero every job takes ``image_seconds``, whatever it holds. Above zero the time follows the
    media, as on the real service: ``image_seconds`` per image, ``duration × video_ratio`` per video, summed.
    """
    if video_ratio <= 0:
        return image_seconds
    return sum(duration * video_ratio if kind == "video" else image_seconds for kind, duration in media)
