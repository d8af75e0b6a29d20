"""Typed values for what the DeepVA API returns.

This module and ``client`` are the only places that know DeepVA's JSON field names. Everything downstream (stages,
sidecars) works on these dataclasses. Parsing is lenient on purpose: the public documentation is thin, so unknown fields
are ignored, numbers may arrive as strings, and a missing optional field becomes None instead of an exception. A field
of the wrong type where we *need* it raises :class:`MalformedResponse`, so that garbage is recorded as a failure rather
than written into a sidecar.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """The job states DeepVA documents. A job may report others: see :attr:`Job.status`."""

    WAITING = "waiting"
    PROCESSING = "processing"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.STOPPED, JobState.FAILED)


_KNOWN = {state.value: state for state in JobState}


class MalformedResponse(ValueError):
    """The server answered, but not with the shape the API documents."""


def _text(value: Any, *, default: str = "") -> str:
    if value is None:
        return default
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise MalformedResponse(f"expected text, got {type(value).__name__}")


def _number(value: Any) -> float | None:
    """Accept numbers and numeric strings ("12.5"); anything else is unknown."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def parse_timestamp(value: Any) -> datetime | None:
    """DeepVA writes ``"2019-08-12 08:14:28.430144"``: space separated, no zone. We read it as UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedResponse(f"{what}: expected an object, got {type(value).__name__}")
    return value


#: Free-form values (module options, a result's ``meta``) are passed on into the JSON sidecar untouched. Deeper than
#: this, they are no data anyone uses but a trap: Python's own ``json`` (and many readers of our sidecars) fail with a
#: RecursionError somewhere below 1000 levels, so such an answer is refused here, as malformed, before it is written.
MAX_NESTING = 64


def _shallow(value: Any, what: str) -> Any:
    """``value`` itself, if its lists and objects nest at most :data:`MAX_NESTING` deep (checked without recursion)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        current, depth = pending.pop()
        if isinstance(current, Mapping):
            children: Any = current.values()
        elif isinstance(current, list):
            children = current
        else:
            continue
        if depth > MAX_NESTING:
            raise MalformedResponse(f"{what}: nested deeper than {MAX_NESTING} levels")
        pending.extend((child, depth + 1) for child in children if isinstance(child, (Mapping, list)))
    return value


def _sequence(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedResponse(f"{what}: expected a list, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class StorageObject:
    """An object in DeepVA storage; ``url`` (``storage://…``) is what a job takes as its source."""

    id: str
    url: str
    name: str
    file_size: int | None
    uploaded: bool
    upload_failed: bool

    @classmethod
    def from_api(cls, data: Any) -> StorageObject:
        body = _mapping(data, "storage object")
        url = _text(body.get("url"))
        if not url:
            raise MalformedResponse("storage object has no url")
        return cls(
            id=_text(body.get("id")),
            url=url,
            name=_text(body.get("name")),
            file_size=_integer(body.get("file_size")),
            uploaded=bool(body.get("uploaded", False)),
            upload_failed=bool(body.get("upload_failed", False)),
        )


@dataclass(frozen=True)
class SummaryItem:
    """One label DeepVA found in a source, e.g. ``type="face", label="Jane Doe"``."""

    type: str
    label: str
    module: str | None = None


@dataclass(frozen=True)
class SourceSummary:
    source: str
    media_type: str
    items: tuple[SummaryItem, ...]


@dataclass(frozen=True)
class Job:
    id: str
    tag: str
    state: str
    progress: float
    sources: tuple[str, ...]
    modules: Mapping[str, Any]
    summary: tuple[SourceSummary, ...] = ()
    errors: tuple[str, ...] = ()
    media_type: str | None = None
    duration: float | None = None
    time_created: datetime | None = None
    time_started: datetime | None = None
    time_completed: datetime | None = None

    @property
    def status(self) -> JobState | None:
        """The state as one DeepVA documents, or None for one it does not (treated as still running)."""
        return _KNOWN.get(self.state)

    @property
    def is_terminal(self) -> bool:
        return self.status is not None and self.status.is_terminal

    def labels(self) -> list[SummaryItem]:
        """Every summary item across sources, in the order DeepVA listed them."""
        return [item for source in self.summary for item in source.items]

    @classmethod
    def from_api(cls, data: Any) -> Job:
        body = _mapping(data, "job")
        job_id = _text(body.get("id"))
        if not job_id:
            raise MalformedResponse("job has no id")
        result = _mapping(body.get("result"), "job.result")
        summary = tuple(_parse_source_summary(entry) for entry in _sequence(result.get("summary"), "job.result.summary"))
        errors = tuple(_text(error) for error in _sequence(body.get("errors"), "job.errors") if error is not None)
        return cls(
            id=job_id,
            tag=_text(body.get("tag")),
            state=_text(body.get("state"), default="unknown").lower(),
            progress=max(0.0, min(1.0, _number(body.get("progress")) or 0.0)),
            sources=tuple(_text(source) for source in _sequence(body.get("sources"), "job.sources")),
            modules=dict(_shallow(_mapping(body.get("modules"), "job.modules"), "job.modules")),
            summary=summary,
            errors=errors,
            media_type=_text(body.get("media_type")) or None,
            duration=_number(body.get("duration")),
            time_created=parse_timestamp(body.get("time_created")),
            time_started=parse_timestamp(body.get("time_started")),
            time_completed=parse_timestamp(body.get("time_completed")),
        )


    def to_api(self) -> dict[str, Any]:
        """The job in the API's own JSON shape, so that :meth:`from_api` reads it back as it was."""
        def moment(value: datetime | None) -> str | None:
            return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ") if value is not None else None

        return {
            "id": self.id, "tag": self.tag, "state": self.state, "progress": self.progress,
            "sources": list(self.sources), "modules": dict(self.modules), "errors": list(self.errors),
            "media_type": self.media_type, "duration": self.duration,
            "time_created": moment(self.time_created), "time_started": moment(self.time_started),
            "time_completed": moment(self.time_completed),
            "result": {"summary": [
                {"source": source.source, "media_type": source.media_type,
                 "items": [{"type": item.type, "label": item.label, **({"module": item.module} if item.module else {})}
                           for item in source.items]}
                for source in self.summary
            ]},
        }

    def dumps(self) -> str:
        """One line of JSON to keep the job as last seen (the ledger holds a finished job until it is published)."""
        return json.dumps(self.to_api(), ensure_ascii=False)

    @classmethod
    def loads(cls, text: str) -> Job:
        return cls.from_api(json.loads(text))


def _parse_source_summary(data: Any) -> SourceSummary:
    body = _mapping(data, "summary entry")
    items = []
    for raw in _sequence(body.get("items"), "summary entry items"):
        item = _mapping(raw, "summary item")
        label = _text(item.get("label"))
        if label:
            items.append(SummaryItem(type=_text(item.get("type")), label=label, module=_text(item.get("module")) or None))
    return SourceSummary(source=_text(body.get("source")), media_type=_text(body.get("media_type")), items=tuple(items))


@dataclass(frozen=True)
class Box:
    """A rectangle as fractions of the frame, top-left origin (DeepVA's ``x, y, w, h``)."""

    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Detection:
    type: str
    frame_index: int | None
    box: Box | None


@dataclass(frozen=True)
class Segment:
    """One entry of a job's detailed results: a label seen from ``time_start`` to ``time_end`` in one source.

    ``meta`` is module specific and passed on untouched (for the JSON sidecar); ``label``, ``kind`` and ``confidence``
    are the common parts we could read from it.
    """

    module: str
    source: str
    media_type: str
    label: str
    kind: str
    confidence: float | None
    frame_start: int | None
    frame_end: int | None
    time_start: float | None
    time_end: float | None
    tc_start: str | None
    tc_end: str | None
    detections: tuple[Detection, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, data: Any) -> Segment:
        body = _mapping(data, "detailed result")
        meta = dict(_shallow(_mapping(body.get("meta"), "detailed result meta"), "detailed result meta"))
        label = ""
        for key in ("label", "name", "text", "value"):
            if isinstance(meta.get(key), str) and meta[key]:
                label = meta[key]
                break
        detections = []
        for raw in _sequence(body.get("detections"), "detections"):
            detection = _mapping(raw, "detection")
            box_data = detection.get("data")
            box = None
            if isinstance(box_data, Mapping):
                coords = [_number(box_data.get(key)) for key in ("x", "y", "w", "h")]
                if all(value is not None for value in coords):
                    box = Box(*coords)  # type: ignore[arg-type]
            detections.append(
                Detection(type=_text(detection.get("type")), frame_index=_integer(detection.get("frame_index")), box=box)
            )
        confidence = None
        for key in ("confidence", "score", "probability", "similarity"):
            confidence = _number(meta.get(key))
            if confidence is not None:
                break
        return cls(
            module=_text(body.get("module")),
            source=_text(body.get("source")),
            media_type=_text(body.get("media_type")),
            label=label,
            kind=_text(meta.get("type")) or _text(body.get("type")),
            confidence=confidence,
            frame_start=_integer(body.get("frame_start")),
            frame_end=_integer(body.get("frame_end")),
            time_start=_number(body.get("time_start")),
            time_end=_number(body.get("time_end")),
            tc_start=_text(body.get("tc_start")) or None,
            tc_end=_text(body.get("tc_end")) or None,
            detections=tuple(detections),
            meta=meta,
        )


@dataclass(frozen=True)
class JobPage:
    """One page of ``GET /jobs/``."""

    total: int
    offset: int
    jobs: tuple[Job, ...]
    has_next: bool
    listed: int
    """Jobs on the page, read or not (see ``only`` in ``DeepVAClient.list_jobs``): how far the page moves the offset."""
