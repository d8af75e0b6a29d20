"""What we know about a media file from its own bytes: its type (sniffed) and its technical facts (probed)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

MediaKind = Literal["image", "video"]


@dataclass(frozen=True)
class MediaFacts:
    """Technical facts read from the file itself, used to place results in time and space.

    Every field but ``kind`` and ``mime`` may be unknown (None): a probe that cannot read a value must say so rather
    than guess, and writers leave the matching property out.
    """

    kind: MediaKind
    mime: str
    width: int | None = None
    height: int | None = None
    frame_rate: Fraction | None = None
    duration_seconds: float | None = None
    frame_count: int | None = None
    start_timecode: str | None = None
