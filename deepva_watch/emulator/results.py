"""Synthetic recognition results shaped like DeepVA's.

Nothing is recognised: every label, box and segment is drawn from a ``random.Random`` seeded with the source's content
fingerprint and the module name. So the same bytes always yield the same results, adding a module never changes another
module's results, and a client can be tested against exact expectations. Segments are placed inside the video's real
duration and some of one label touch or overlap, as real detections do, so consumers have to merge them.

Only the modules listed in :data:`VOCABULARY` produce results. Any other module name is accepted and yields nothing,
because on the real service new modules appear without notice.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .sources import ResolvedSource

PERSONS = (
    "Jane Doe",
    "John Roe",
    "Zoë Åberg",
    "Frederik Böhm",
    "Mariana Núñez",
    "Søren Kjær",
    "Aiko Tanaka",
    "Łukasz Wójcik",
    "Chloé Lefèvre",
    "Oluwaseun Adeyemi",
    "Ingrid Þórsdóttir",
    "Renée Dubois",
)
OBJECTS = ("microphone", "camera", "podium", "car", "flag", "laptop", "chair", "crowd", "building", "tree")
LANDMARKS = (
    "Brandenburg Gate",
    "Eiffel Tower",
    "Tower Bridge",
    "Colosseum",
    "Sydney Opera House",
    "Golden Gate Bridge",
)
TEXTS = ("BREAKING NEWS", "LIVE", "Main Street", "Exit", "Welcome", "Press Conference", "Straße gesperrt")
LOWER_THIRDS = (
    "Jane Doe, Correspondent",
    "Zoë Åberg, Minister of Culture",
    "Frederik Böhm, Reporter",
    "Aiko Tanaka, Spokesperson",
    "Søren Kjær, Head Coach",
)

VOCABULARY: Mapping[str, tuple[str, Sequence[str]]] = {
    "face_recognition": ("face", PERSONS),
    "object_scene_recognition": ("object", OBJECTS),
    "landmark_recognition": ("landmark", LANDMARKS),
    "text_recognition": ("text", TEXTS),
    "lower_third_recognition": ("lower_third", LOWER_THIRDS),
}


@dataclass(frozen=True)
class JobResults:
    summary: list[dict[str, Any]]
    segments: list[dict[str, Any]]


def synthesize(sources: Sequence[ResolvedSource], modules: Mapping[str, Any]) -> JobResults:
    summary: list[dict[str, Any]] = []
    segments: list[dict[str, Any]] = []
    for resolved in sources:
        items: list[dict[str, Any]] = []
        source_segments: list[dict[str, Any]] = []
        for module in modules:
            if module not in VOCABULARY:
                continue
            item_type, vocabulary = VOCABULARY[module]
            rng = _rng(resolved.facts.seed, module)
            for label in rng.sample(list(vocabulary), rng.randint(1, 3)):
                items.append({"type": item_type, "label": label, "module": module})
                source_segments.extend(_segments_for_label(rng, resolved, module, item_type, label))
        source_segments.sort(key=lambda segment: (segment["time_start"], segment["frame_start"]))
        segments.extend(source_segments)
        summary.append({"source": resolved.source, "media_type": resolved.facts.media_type, "info": {}, "items": items})
    return JobResults(summary=summary, segments=segments)


def _rng(seed: bytes, module: str) -> random.Random:
    return random.Random(hashlib.sha256(seed + b"\0" + module.encode("utf-8")).digest())


def _segments_for_label(
    rng: random.Random, resolved: ResolvedSource, module: str, item_type: str, label: str
) -> list[dict[str, Any]]:
    meta = {"label": label, "type": item_type, "confidence": round(rng.uniform(0.7, 0.99), 3)}
    facts = resolved.facts
    if facts.media_type == "image":
        # A still image is a one-frame source: its only frame has index 0, its time is 0.
        detections = [_face_box(rng, 0)] if item_type == "face" else []
        return [_segment(resolved, module, meta, 0, 0, 0.0, 0.0, "00:00:00:00", "00:00:00:00", detections)]
    fps = facts.frame_rate
    last_frame = max(0, math.floor(facts.duration * fps) - 1)
    result = []
    for first, last in _frame_ranges(rng, last_frame):
        detections = []
        if item_type == "face":
            frames = sorted(set(rng.randint(first, last) for _ in range(rng.randint(1, 3))))
            detections = [_face_box(rng, frame) for frame in frames]
        result.append(
            _segment(
                resolved,
                module,
                dict(meta),
                first,
                last,
                round(first / fps, 3),
                round(last / fps, 3),
                timecode(first, fps),
                timecode(last, fps),
                detections,
            )
        )
    return result


def _frame_ranges(rng: random.Random, last_frame: int) -> list[tuple[int, int]]:
    """Two to four ranges; the second always touches or overlaps the first, later ones touch, overlap or leave a gap."""
    total = last_frame + 1
    ranges: list[tuple[int, int]] = []
    start = rng.randint(0, int(total * 0.4))
    for index in range(rng.randint(2, 4)):
        length = max(1, round(rng.uniform(0.05, 0.2) * total))
        if ranges:
            previous_start, previous_end = ranges[-1]
            relation = rng.choice(("touch", "overlap")) if index == 1 else rng.choice(("touch", "overlap", "gap"))
            if relation == "touch":
                start = previous_end
            elif relation == "overlap":
                start = max(previous_start, previous_end - max(1, length // 3))
            else:
                start = previous_end + max(1, round(rng.uniform(0.02, 0.1) * total))
        if start > last_frame:
            break
        ranges.append((start, min(start + length, last_frame)))
    return ranges


def _face_box(rng: random.Random, frame_index: int) -> dict[str, Any]:
    """Fractions of the frame, top-left origin, always inside [0, 1] even after rounding."""
    width = _floor4(rng.uniform(0.05, 0.3))
    height = _floor4(rng.uniform(0.08, 0.4))
    x = _floor4(rng.uniform(0.0, 1.0 - width))
    y = _floor4(rng.uniform(0.0, 1.0 - height))
    return {"frame_index": frame_index, "type": "face_bbox", "data": {"x": x, "y": y, "w": width, "h": height}}


def _floor4(value: float) -> float:
    return math.floor(value * 10_000) / 10_000


def _segment(
    resolved: ResolvedSource,
    module: str,
    meta: dict[str, Any],
    frame_start: int,
    frame_end: int,
    time_start: float,
    time_end: float,
    tc_start: str,
    tc_end: str,
    detections: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "media_type": resolved.facts.media_type,
        "frame_start": frame_start,
        "frame_end": frame_end,
        "time_start": time_start,
        "time_end": time_end,
        "tc_start": tc_start,
        "tc_end": tc_end,
        "source": resolved.source,
        "module": module,
        "meta": meta,
        "detections": detections,
        "thumbnail": None,
    }


def timecode(frame: int, frame_rate: float) -> str:
    """SMPTE ``HH:MM:SS:FF``, non-drop-frame at the nominal rate (29.97 counts as 30, as NDF timecode does)."""
    nominal = max(1, round(frame_rate))
    seconds, frames = divmod(frame, nominal)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}:{frames:02d}"
