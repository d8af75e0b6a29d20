"""The JSON shapes the emulator answers with, one function per resource.

Field names and formats follow the seed document and the public DeepVA documentation; see ``docs`` notes in each
function where the emulator has to choose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from .state import EmulatorState, JobRecord, StoredObject


def timestamp(epoch_seconds: float | None) -> str | None:
    """``"2019-08-12 08:14:28.430144"``: UTC, space separated, no zone, as in the seed."""
    if epoch_seconds is None:
        return None
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def job_json(state: EmulatorState, job: JobRecord, origin: str, *, as_created: bool = False) -> dict[str, Any]:
    """The job as it stands now; ``as_created`` gives the snapshot the creating request answers with."""
    timeline = job.timeline
    phase = timeline.created_phase() if as_created else timeline.phase_at(state.now())
    summary = state.results_of(job).summary if phase.state == "completed" else []
    body: dict[str, Any] = {
        "id": job.id,
        "tag": job.tag,
        "state": phase.state,
        "progress": phase.progress,
        "duration": phase.duration,
        "time_created": timestamp(timeline.created_at),
        "time_started": timestamp(phase.time_started),
        "time_completed": timestamp(phase.time_completed),
        "sources": list(job.sources),
        "modules": job.modules,
        "result": {"detailed_link": f"{origin}/api/v1/jobs/{job.id}/detailed-results", "summary": summary},
        "errors": list(job.errors) if phase.state == "failed" else [],
        "media_type": job.media_type,
        "ttl": None,
    }
    if job.webhook is not None:
        body["webhook"] = job.webhook
    return body


def storage_json(stored: StoredObject) -> dict[str, Any]:
    return {
        "id": stored.id,
        "url": stored.url,
        "file_size": stored.size,
        "name": stored.name,
        "is_folder": False,
        "uploaded": not stored.upload_failed,
        "is_image": stored.media_type == "image",
        "upload_failed": stored.upload_failed,
    }


def page(
    items: Sequence[Any],
    offset: int,
    limit: int,
    page_url: Callable[[int, int], str],
    render: Callable[[Any], dict[str, Any]],
) -> dict[str, Any]:
    """The envelope every DeepVA list uses; ``next``/``prev`` are absolute URLs or null."""
    total = len(items)
    following = page_url(offset + limit, limit) if offset + limit < total else None
    previous = page_url(max(0, offset - limit), limit) if offset > 0 else None
    return {
        "total": total,
        "offset": offset,
        "limit": limit,
        "next": following,
        "prev": previous,
        "data": [render(item) for item in items[offset : offset + limit]],
    }


def page_url_builder(origin: str, path: str, query: dict[str, str]) -> Callable[[int, int], str]:
    """Keeps the caller's filters (``tag``, ``folder``) in the links and replaces only offset and limit."""

    def build(offset: int, limit: int) -> str:
        params = {key: value for key, value in query.items() if key not in ("offset", "limit")}
        params.update(offset=str(offset), limit=str(limit))
        return f"{origin}{path}?{urlencode(params)}"

    return build
