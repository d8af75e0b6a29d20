"""Sidecar writers: turn a finished DeepVA job into files that newsroom tools read.

For each media file we write up to two sidecars, each replaced atomically:

* ``{name}.deepva.json`` — the complete results (schema: ``deepva_watch/schemas/sidecar.schema.json``);
* an XMP sidecar (``{name}.xmp`` or ``{stem}.xmp``) — keywords, people, face regions and video markers, merged into any
  sidecar a person or another tool already keeps there.

This package is the only place that knows XML. See ``xmp`` for what a re-run replaces and ``claim`` for how two media
files sharing a stem are kept apart.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from deepva_watch.deepva.models import Job, Segment
from deepva_watch.fsutil import atomic_write, fsync_folder
from deepva_watch.media import MediaFacts, MediaKind
from deepva_watch.sidecars.claim import claim_xmp
from deepva_watch.sidecars.collect import ResultCollector
from deepva_watch.sidecars.embedded import read_embedded_keywords
from deepva_watch.sidecars.json_sidecar import SCHEMA_VERSION, job_json, load_schema, summary_json, write_json_sidecar
from deepva_watch.sidecars.keywords import KeywordFields
from deepva_watch.sidecars.model import Provenance, SidecarSettings, WrittenSidecars
from deepva_watch.sidecars.naming import (
    UnsafeSidecarPath,
    is_sidecar_name,
    relative_to_root,
    sidecar_folder,
    sidecar_paths,
    xmp_form,
)
from deepva_watch.sidecars.xmp import XmpContent, render_xmp

__all__ = [
    "SCHEMA_VERSION",
    "Provenance",
    "SidecarSettings",
    "UnsafeSidecarPath",
    "WrittenSidecars",
    "is_sidecar_name",
    "load_schema",
    "publish_failure",
    "publish_results",
    "sidecar_paths",
]

_FAILED_STATES = ("failed", "stopped")


class ClaimLocks:
    """Deciding who owns a stem sidecar and then writing it must not interleave with another worker doing the same for
    the proxy of the same clip. Every XMP name a media file may take (``clip.mov.xmp``, ``clip.xmp``) starts with its
    name up to the first dot, so one lock per folder and such a prefix (case-folded, for shares that ignore case)
    keeps apart exactly the files that could meet. One lock for all would make every worker wait on every other's
    fsync: on a network share that alone caps publishing at one file per round trip to the server."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: dict[tuple[str, str], tuple[threading.Lock, list[int]]] = {}

    @contextmanager
    def holding(self, folder: Path, media_name: str) -> Iterator[None]:
        key = (str(folder), unicodedata.normalize("NFC", media_name.partition(".")[0]).casefold())
        with self._guard:
            lock, users = self._held.setdefault(key, (threading.Lock(), [0]))
            users[0] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users[0] -= 1
                if not users[0]:
                    del self._held[key]

    def in_use(self) -> int:
        """How many names are locked or waited for right now."""
        with self._guard:
            return len(self._held)


XMP_CLAIMS = ClaimLocks()


def publish_results(
    media_path: Path,
    *,
    watch_root: Path,
    settings: SidecarSettings,
    job: Job,
    segments: Iterable[Segment],
    media: MediaFacts,
    provenance: Provenance,
) -> WrittenSidecars:
    """Write the sidecars for a completed job. ``segments`` is read exactly once, as it streams.

    Raises OSError when a file cannot be written (the old sidecars are then untouched) and
    :class:`UnsafeSidecarPath` when ``media_path`` is not inside ``watch_root``.
    """
    media_path = Path(media_path)
    xmp_planned, json_path = sidecar_paths(media_path, watch_root=watch_root, settings=settings, kind=media.kind)
    collector = ResultCollector(is_video=media.kind == "video", rate=media.frame_rate)
    for item in job.labels():
        collector.add_summary_item(item)

    written_json: Path | None = None
    if settings.json:
        _ensure_folder(json_path.parent, media_path)
        asset_path = relative_to_root(media_path, watch_root).as_posix()
        job_fields = job_json(job, job_id=provenance.job_id)
        summary = summary_json(job)
        feed = collector.add_segment if settings.xmp else None

        def write_json(stream: IO[bytes]) -> None:
            write_json_sidecar(stream, asset_path=asset_path, asset_name=media_path.name, job=job_fields,
                               summary=summary, segments=segments, media=media, provenance=provenance,
                               on_segment=feed)

        atomic_write(json_path, write_json, sync_folder=False)  # synced below, once for both sidecars
        written_json = json_path
    elif settings.xmp:
        for segment in segments:
            collector.add_segment(segment)

    if not settings.xmp:
        if written_json is not None:
            fsync_folder(written_json.parent)
        return WrittenSidecars(xmp=None, json=written_json)

    _ensure_folder(xmp_planned.parent, media_path)
    collected = collector.finish()
    notes = list(collected.notes)
    with XMP_CLAIMS.holding(xmp_planned.parent, media_path.name):
        stem_form = xmp_form(settings.naming, media.kind) == "stem"
        claim = claim_xmp(media_path, folder=xmp_planned.parent, stem_form=stem_form)
        notes.extend(claim.notes)
        embedded = None
        if claim.existing is None and media.kind == "image":
            embedded = _embedded_keywords(media_path, notes)
        content = XmpContent(
            collected=collected,
            media=media,
            provenance=provenance,
            source_name=media_path.name,
            sidecar_for_extension=claim.sidecar_for_extension,
            tags_list=settings.digikam_tags_list,
            embedded=embedded,
        )
        data = render_xmp(claim.existing, content, toolkit=f"deepva-watch {provenance.daemon_version}")

        def write_xmp(stream: IO[bytes]) -> None:
            stream.write(data)

        atomic_write(claim.path, write_xmp, sync_folder=False)
    for folder in {claim.path.parent, *([written_json.parent] if written_json is not None else [])}:
        fsync_folder(folder)
    return WrittenSidecars(xmp=claim.path, json=written_json, notes=tuple(notes))


def _embedded_keywords(media_path: Path, notes: list[str]) -> KeywordFields | None:
    """The file's own keywords for a new sidecar; a file we cannot read them from costs a note, never the sidecar."""
    try:
        return read_embedded_keywords(media_path)
    except Exception as error:  # Pillow and the XML parser raise many kinds of error for a damaged file
        notes.append(f"could not read the keywords embedded in {media_path.name} ({type(error).__name__}: {error}); "
                     "the new sidecar holds only ours")
        return None


def _ensure_folder(folder: Path, media_path: Path) -> None:
    """Sidecars next to the media need no folder made; under ``output_dir`` the mirrored folder may not exist yet."""
    if folder != media_path.parent:
        folder.mkdir(parents=True, exist_ok=True)


def publish_failure(
    media_path: Path,
    *,
    watch_root: Path,
    settings: SidecarSettings,
    job: Job | None,
    errors: Sequence[str],
    media: MediaFacts | None,
    provenance: Provenance,
) -> WrittenSidecars:
    """Record a failed or stopped job in the JSON sidecar, so that people looking at the folder see why.

    Never writes or touches an XMP sidecar: a failure has no keywords to add, and an earlier good result stays.
    """
    media_path = Path(media_path)
    if not settings.json:
        return WrittenSidecars(xmp=None, json=None, notes=("JSON sidecars are switched off: the failure is not written",))
    folder = sidecar_folder(media_path, watch_root=watch_root, settings=settings)
    _, json_path = sidecar_paths(media_path, watch_root=watch_root, settings=settings, kind=_kind(media))
    assert json_path.parent == folder
    folder.mkdir(parents=True, exist_ok=True)
    state = job.state if job is not None and job.state in _FAILED_STATES else "failed"
    job_fields = job_json(job, job_id=provenance.job_id, state=state, extra_errors=errors)
    asset_path = relative_to_root(media_path, watch_root).as_posix()

    def write_json(stream: IO[bytes]) -> None:
        write_json_sidecar(stream, asset_path=asset_path, asset_name=media_path.name, job=job_fields,
                           summary=summary_json(job), segments=(), media=media, provenance=provenance)

    atomic_write(json_path, write_json)
    return WrittenSidecars(xmp=None, json=json_path)


def _kind(media: MediaFacts | None) -> MediaKind:
    """Only the XMP name depends on the kind, and a failure writes no XMP: any kind gives the right JSON path."""
    return media.kind if media else "image"
