"""A job's lifecycle as a pure function of time.

The real service moves jobs forward in its workers; the emulator has no workers. Instead every job remembers when it was
created and how long it queues and processes, and each read computes where it stands *now*. That keeps the emulator free
of background threads and makes the lifecycle exact under an injected clock.
"""

from __future__ import annotations

from dataclasses import dataclass


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

    @property
    def started_at(self) -> float:
        return self.created_at + self.queue_time

    @property
    def completed_at(self) -> float:
        return self.started_at + self.processing_time

    def is_completed(self, now: float) -> bool:
        return now >= self.completed_at

    def phase_at(self, now: float) -> Phase:
        """``waiting`` up to and including the start instant, ``processing`` while progress rises, then ``completed``.

        Checking completion first is what lets a zero processing time mean "complete on the very first read".
        """
        if self.is_completed(now):
            return Phase("completed", 1.0, self.started_at, self.completed_at, round(self.processing_time, 6))
        if now <= self.started_at:
            return Phase("waiting", 0.0, None, None, 0)
        elapsed = now - self.started_at
        progress = min(max(elapsed / self.processing_time, 0.0), 1.0)
        return Phase("processing", round(progress, 4), self.started_at, None, round(elapsed, 6))

    def created_phase(self) -> Phase:
        """What the creating request sees: the job is always queued first, as on the real service."""
        return Phase("waiting", 0.0, None, None, 0)
