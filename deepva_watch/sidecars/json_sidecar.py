"""The JSON sidecar: everything DeepVA told us about one file, for tools that want more than keywords.

The detailed results are streamed element by element into the (temporary) file, so a job with millions of segments
never sits in memory. The layout is documented in ``deepva_watch/schemas/sidecar.schema.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from fractions import Fraction
from importlib import resources
from typing import IO, Any

from deepva_watch.deepva.models import Job, Segment
from deepva_watch.log import scrub
from deepva_watch.media import MediaFacts
from deepva_watch.sidecars.model import Provenance
from deepva_watch.sidecars.text import json_safe

SCHEMA_VERSION = "deepva-watch/sidecar/1"


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) documenting every field, shipped as package data."""
    text = resources.files("deepva_watch").joinpath("schemas/sidecar.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def write_json_sidecar(
    stream: IO[bytes],
    *,
    asset_path: str,
    asset_name: str,
    job: dict[str, Any],
    summary: list[dict[str, Any]],
    segments: Iterable[Segment],
    media: MediaFacts | None,
    provenance: Provenance,
    on_segment: Callable[[Segment], None] | None = None,
) -> int:
    """Write the whole document; returns how many segments were written. ``on_segment`` sees each one as it passes."""
    head = {
        "schema": SCHEMA_VERSION,
        "asset": {
            "path": asset_path,
            "name": asset_name,
            "size": provenance.source_size,
            "mtime": iso_utc(provenance.source_mtime),
            "hash": provenance.source_hash,
            "asset_id": provenance.asset_id,
            "media": media_json(media),
        },
        "job": job,
        "summary": summary,
    }
    tail = {"processed_at": iso_utc(provenance.processed_at), "daemon_version": provenance.daemon_version}
    opening = _dumps(head)[:-1]  # the object without its closing brace
    stream.write(opening.encode("utf-8"))
    stream.write(b',\n"detailed_results": [')
    count = 0
    for segment in segments:
        if on_segment is not None:
            on_segment(segment)
        stream.write(b"\n" if count == 0 else b",\n")
        stream.write(_dumps(segment_json(segment)).encode("utf-8"))
        count += 1
    stream.write(b"\n],\n")
    stream.write(_dumps(tail)[1:].encode("utf-8"))  # the tail's members and the final brace
    stream.write(b"\n")
    return count


def job_json(job: Job | None, *, job_id: str, state: str | None = None, extra_errors: Iterable[str] = ()) -> dict[str, Any]:
    """The ``job`` object. Its errors are the server's own text (a server may echo the key it was sent) and ours: every
    registered secret is cut out of them here, so that no caller can forget it."""
    errors = [*(job.errors if job else ()), *extra_errors]
    return {
        "id": job.id if job else job_id,
        "state": state or (job.state if job else "failed"),
        "modules": json_safe(job.modules) if job else {},
        "errors": [scrub(str(error)) for error in errors],
        "time_created": iso_utc(job.time_created) if job else None,
        "time_started": iso_utc(job.time_started) if job else None,
        "time_completed": iso_utc(job.time_completed) if job else None,
        "progress": job.progress if job else None,
    }


def summary_json(job: Job | None) -> list[dict[str, Any]]:
    if job is None:
        return []
    return [
        {
            "source": source.source,
            "media_type": source.media_type,
            "items": [{"type": item.type, "label": item.label, "module": item.module} for item in source.items],
        }
        for source in job.summary
    ]


def media_json(media: MediaFacts | None) -> dict[str, Any] | None:
    if media is None:
        return None
    return {
        "kind": media.kind,
        "mime": media.mime,
        "width": media.width,
        "height": media.height,
        "frame_rate": fraction_text(media.frame_rate),
        "duration_seconds": media.duration_seconds,
        "start_timecode": media.start_timecode,
    }


def segment_json(segment: Segment) -> dict[str, Any]:
    return {
        "module": segment.module,
        "source": segment.source,
        "media_type": segment.media_type,
        "label": segment.label,
        "kind": segment.kind,
        "confidence": segment.confidence,
        "frame_start": segment.frame_start,
        "frame_end": segment.frame_end,
        "time_start": segment.time_start,
        "time_end": segment.time_end,
        "tc_start": segment.tc_start,
        "tc_end": segment.tc_end,
        "detections": [
            {
                "type": detection.type,
                "frame_index": detection.frame_index,
                "box": None
                if detection.box is None
                else {"x": detection.box.x, "y": detection.box.y, "w": detection.box.w, "h": detection.box.h},
            }
            for detection in segment.detections
        ],
        "meta": segment.meta,
    }


def fraction_text(value: Fraction | None) -> str | None:
    return None if value is None else f"{value.numerator}/{value.denominator}"


def iso_utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _dumps(value: Any) -> str:
    """Fast path for the common, clean value; the cleaning copy only when the value needs it."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")  # fails on a lone surrogate
        return text
    except (ValueError, TypeError, UnicodeEncodeError):
        return json.dumps(json_safe(value), ensure_ascii=False, allow_nan=False)
