"""What the XMP sidecar needs from a stream of segments, kept in memory proportional to its output.

Detailed results for hours of video can hold millions of segments. They are read once, as they arrive, and only
distinct labels, merged marker intervals (one per continuous appearance of a label) and image face regions are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from deepva_watch.deepva.models import Box, Segment, SummaryItem
from deepva_watch.sidecars.keywords import Keyword, keyword
from deepva_watch.sidecars.kinds import LabelKind, classify, is_named_person
from deepva_watch.sidecars.text import format_decimal
from deepva_watch.sidecars.timing import MILLISECOND_RATE, seconds_to_units

# Two appearances of a label separated by at most this many frames are one marker: detectors sampling every other
# frame leave one-frame holes that are not real cuts.
MERGE_GAP_FRAMES = 1


@dataclass
class Interval:
    start: int  # first frame
    end: int  # one past the last frame
    confidence: float | None
    box: Box | None

    def absorb(self, other: Interval) -> None:
        self.end = max(self.end, other.end)
        self.start = min(self.start, other.start)
        if other.confidence is not None and (self.confidence is None or other.confidence > self.confidence):
            self.confidence = other.confidence
        if self.box is None:
            self.box = other.box


@dataclass(frozen=True)
class Marker:
    start: int
    duration: int
    name: str
    comment: str
    box: Box | None


@dataclass(frozen=True)
class Region:
    name: str
    box: Box  # already clamped to the frame


@dataclass
class Collected:
    """Everything the XMP writer needs, in first-seen order; ``notes`` are worth one log line each."""

    keywords: list[Keyword] = field(default_factory=list)
    people: list[str] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    marker_rate: Fraction | None = None
    notes: list[str] = field(default_factory=list)


class ResultCollector:
    """Feed it summary items and segments one by one; ``finish()`` returns the merged view.

    ``rate`` is the video frame rate (None for images, or when unknown: markers are then counted in milliseconds).
    """

    def __init__(self, *, is_video: bool, rate: Fraction | None) -> None:
        self._is_video = is_video
        self._rate = rate if rate else MILLISECOND_RATE
        self._keywords: dict[Keyword, None] = {}  # ordered set
        self._people: dict[str, None] = {}
        self._regions: dict[Region, None] = {}
        self._intervals: dict[tuple[str, str], list[Interval]] = {}
        self._kinds: dict[tuple[str, str], LabelKind] = {}
        self._mismatches = 0
        self._first_mismatch = ""

    def add_summary_item(self, item: SummaryItem) -> None:
        self._add_label(classify(item.type, item.module), item.label)

    def add_segment(self, segment: Segment) -> None:
        if not segment.label:
            return
        kind = classify(segment.kind, segment.module)
        self._add_label(kind, segment.label)
        if self._is_video:
            self._add_interval(kind, segment)
        else:
            self._add_regions(kind, segment)

    def finish(self) -> Collected:
        markers: list[Marker] = []
        for key, intervals in self._intervals.items():
            module, label = key
            kind = self._kinds[key]
            for interval in _merge(intervals):
                comment = module or kind.marker_prefix.lower()
                if interval.confidence is not None:
                    comment += f", confidence {_confidence_text(interval.confidence)}"
                markers.append(
                    Marker(
                        start=interval.start,
                        duration=max(1, interval.end - interval.start),
                        name=f"{kind.marker_prefix}: {label}",
                        comment=comment,
                        box=interval.box if kind.is_person else None,
                    )
                )
        markers.sort(key=lambda marker: (marker.start, marker.name))
        notes = []
        if self._mismatches:
            notes.append(f"frame numbers disagree with the times in {self._mismatches} detailed result(s), e.g. "
                         f"{self._first_mismatch}: markers follow the times")
        return Collected(
            keywords=list(self._keywords),
            people=list(self._people),
            regions=list(self._regions),
            markers=markers,
            marker_rate=self._rate if self._is_video else None,
            notes=notes,
        )

    def _add_label(self, kind: LabelKind, label: str) -> None:
        found = keyword(kind.hierarchy, label)
        if found is None:
            return
        self._keywords.setdefault(found, None)
        if is_named_person(kind, label):
            self._people.setdefault(label, None)

    def _add_interval(self, kind: LabelKind, segment: Segment) -> None:
        span = self._frames(segment)
        if span is None:
            return
        start, end = span
        box = next((d.box for d in segment.detections if d.box is not None), None)
        interval = Interval(start=start, end=max(end, start + 1), confidence=segment.confidence, box=box)
        key = (segment.module, segment.label)
        self._kinds.setdefault(key, kind)
        intervals = self._intervals.setdefault(key, [])
        # Results arrive mostly in time order, so the newest interval usually extends the last one: memory then grows
        # with the number of markers, not of segments. Anything out of order is merged at the end.
        if intervals and intervals[-1].start <= interval.start <= intervals[-1].end + MERGE_GAP_FRAMES:
            intervals[-1].absorb(interval)
        else:
            intervals.append(interval)

    def _frames(self, segment: Segment) -> tuple[int, int] | None:
        """(first frame, one past the last) at the file's rate.

        DeepVA does not document at what rate ``frame_start`` counts, and some results count at another rate than the
        file's. Frame numbers are used when they agree with the times to within one frame; otherwise the times win.
        A marker is never shorter than its times say.
        """
        rate = self._rate
        time_start = None if segment.time_start is None else seconds_to_units(segment.time_start, rate)
        time_end = None if segment.time_end is None else seconds_to_units(segment.time_end, rate)
        start, end = time_start, time_end
        if rate is not MILLISECOND_RATE:  # frame numbers mean something only at a known rate
            frame_start = segment.frame_start
            frame_end = None if segment.frame_end is None else segment.frame_end + 1  # DeepVA's is the last frame
            if _disagree(frame_start, time_start) or _disagree(frame_end, time_end):
                self._note_mismatch(segment)
                start = time_start if time_start is not None else frame_start
                end = time_end if time_end is not None else frame_end
            else:
                start = frame_start if frame_start is not None else time_start
                end = frame_end if frame_end is not None else time_end
                if start is not None and end is not None and time_start is not None and time_end is not None:
                    end = max(end, start + time_end - time_start)
        if start is None:
            return None
        if end is None:
            end = start + 1
        return max(0, start), max(0, end)

    def _note_mismatch(self, segment: Segment) -> None:
        self._mismatches += 1
        if self._mismatches == 1:
            self._first_mismatch = (
                f"{segment.module}: frames {segment.frame_start}-{segment.frame_end}, times {segment.time_start}-"
                f"{segment.time_end} s, at the file's {format_decimal(float(self._rate), 3)} fps"
            )

    def _add_regions(self, kind: LabelKind, segment: Segment) -> None:
        for detection in segment.detections:
            if detection.box is None:
                continue
            if not (kind.is_person or "face" in detection.type.lower()):
                continue
            box = clamp_box(detection.box)
            if box is not None:
                self._regions.setdefault(Region(name=segment.label, box=box), None)


def clamp_box(box: Box) -> Box | None:
    """Clip a top-left box to the frame; None when nothing of it is inside."""
    left, top = _unit(box.x), _unit(box.y)
    right, bottom = _unit(box.x + box.w), _unit(box.y + box.h)
    if right <= left or bottom <= top:
        return None
    return Box(left, top, right - left, bottom - top)


def _disagree(frame: int | None, by_time: int | None) -> bool:
    """Both known and more than one frame apart."""
    return frame is not None and by_time is not None and abs(frame - by_time) > 1


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))


def _merge(intervals: list[Interval]) -> list[Interval]:
    ordered = sorted(intervals, key=lambda interval: interval.start)
    merged: list[Interval] = []
    for interval in ordered:
        if merged and interval.start <= merged[-1].end + MERGE_GAP_FRAMES:
            merged[-1].absorb(interval)
        else:
            merged.append(interval)
    return merged


def _confidence_text(confidence: float) -> str:
    text = format(confidence, ".2f")
    return text.rstrip("0").rstrip(".") if "." in text else text
