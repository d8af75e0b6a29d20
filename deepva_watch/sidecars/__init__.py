"""Sidecar writers: turn a finished DeepVA job into files that newsroom tools read.

For each media file we write up to two sidecars, each replaced atomically:

* ``{name}.deepva.json`` — the complete results (schema: ``deepva_watch/schemas/sidecar.schema.json``);
* an XMP sidecar (``{name}.xmp`` or ``{stem}.xmp``) — keywords, people, face regions and video markers, merged into any
  sidecar a person or another tool already keeps there.

This package is the only place that knows XML. See ``xmp`` for what a re-run replaces, ``claim`` for how two media
files sharing a stem are kept apart and what is done with a file at a sidecar's name that is not one, and ``folders``
for how every write stays inside the watched tree (or ``output_dir``) when a folder is swapped for a link.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

from deepva_watch.deepva.models import Job, Segment
from deepva_watch.fsutil import NotARegularFile, atomic_write_at, fsync_dir
from deepva_watch.media import MediaFacts, MediaKind
from deepva_watch.sidecars.claim import claim_xmp
from deepva_watch.sidecars.collect import ResultCollector
from deepva_watch.sidecars.embedded import read_embedded_keywords_at
from deepva_watch.sidecars.folders import OpenFolder, SidecarPlace, sidecar_place
from deepva_watch.sidecars.json_sidecar import SCHEMA_VERSION, job_json, load_schema, summary_json, write_json_sidecar
from deepva_watch.sidecars.keywords import KeywordFields
from deepva_watch.sidecars.model import Provenance, SidecarSettings, WrittenSidecars
from deepva_watch.sidecars.naming import (
    UnsafeSidecarPath,
    is_sidecar_name,
    relative_to_root,
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

    Raises OSError when a file cannot be written (the old sidecars are then untouched), and
    :class:`UnsafeSidecarPath` when ``media_path`` is not inside ``watch_root``, when a folder between the root (or
    ``output_dir``) and the sidecars is a symbolic link or no folder, or when a sidecar's name holds something other
    than a regular file (see ``claim``): nothing is written through a link or in place of such a file. The JSON
    sidecar is written first; when the XMP is refused afterwards, the JSON stays.
    """
    media_path = Path(media_path)
    _, json_path = sidecar_paths(media_path, watch_root=watch_root, settings=settings, kind=media.kind)
    collector = ResultCollector(is_video=media.kind == "video", rate=media.frame_rate)
    for item in job.labels():
        collector.add_summary_item(item)
    if not (settings.json or settings.xmp):
        return WrittenSidecars(xmp=None, json=None)

    with sidecar_place(media_path, watch_root=watch_root, settings=settings) as place:
        folder = place.sidecars
        written_json: Path | None = None
        if settings.json:
            asset_path = relative_to_root(media_path, watch_root).as_posix()
            job_fields = job_json(job, job_id=provenance.job_id)
            summary = summary_json(job)
            feed = collector.add_segment if settings.xmp else None

            def write_json(stream: IO[bytes]) -> None:
                write_json_sidecar(stream, asset_path=asset_path, asset_name=media_path.name, job=job_fields,
                                   summary=summary, segments=segments, media=media, provenance=provenance,
                                   on_segment=feed)

            _write(folder, json_path.name, write_json)
            written_json = folder.path_of(json_path.name)
        elif settings.xmp:
            for segment in segments:
                collector.add_segment(segment)

        if not settings.xmp:
            fsync_dir(folder.fd)
            return WrittenSidecars(xmp=None, json=written_json)

        collected = collector.finish()
        notes = list(collected.notes)
        with XMP_CLAIMS.holding(folder.path, media_path.name):
            stem_form = xmp_form(settings.naming, media.kind) == "stem"
            claim = claim_xmp(place, media_path.name, stem_form=stem_form)
            notes.extend(claim.notes)
            embedded = None
            if claim.existing is None and media.kind == "image":
                embedded = _embedded_keywords(place, media_path.name, notes)
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

            _write(folder, claim.name, write_xmp)
        fsync_dir(folder.fd)  # once for both sidecars
        return WrittenSidecars(xmp=claim.path, json=written_json, notes=tuple(notes))


def _write(folder: OpenFolder, name: str, write: Callable[[BinaryIO], None]) -> None:
    """Replace ``name`` in ``folder``, leaving the folder's sync to the caller; a name that holds anything but a
    regular file (a FIFO, a device, a link) is left alone."""
    try:
        atomic_write_at(folder.fd, name, write, sync_folder=False)
    except NotARegularFile as error:
        raise UnsafeSidecarPath(f"{folder.path_of(name)} is {error.kind}, not a regular file: it is left alone and "
                                "nothing is written in its place") from error


def _embedded_keywords(place: SidecarPlace, media_name: str, notes: list[str]) -> KeywordFields | None:
    """The file's own keywords for a new sidecar; a file we cannot read them from costs a note, never the sidecar."""
    try:
        return read_embedded_keywords_at(place.media_folder().fd, media_name)
    except Exception as error:  # Pillow and the XML parser raise many kinds of error for a damaged file
        notes.append(f"could not read the keywords embedded in {media_name} ({type(error).__name__}: {error}); "
                     "the new sidecar holds only ours")
        return None


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

    Never writes or touches an XMP sidecar: a failure has no keywords to add, and an earlier good result stays. Every
    registered secret is cut out of the job's and the given errors. Raises as :func:`publish_results` does.
    """
    media_path = Path(media_path)
    if not settings.json:
        return WrittenSidecars(xmp=None, json=None, notes=("JSON sidecars are switched off: the failure is not written",))
    _, json_path = sidecar_paths(media_path, watch_root=watch_root, settings=settings, kind=_kind(media))
    state = job.state if job is not None and job.state in _FAILED_STATES else "failed"
    job_fields = job_json(job, job_id=provenance.job_id, state=state, extra_errors=errors)
    asset_path = relative_to_root(media_path, watch_root).as_posix()

    def write_json(stream: IO[bytes]) -> None:
        write_json_sidecar(stream, asset_path=asset_path, asset_name=media_path.name, job=job_fields,
                           summary=summary_json(job), segments=(), media=media, provenance=provenance)

    with sidecar_place(media_path, watch_root=watch_root, settings=settings) as place:
        _write(place.sidecars, json_path.name, write_json)
        fsync_dir(place.sidecars.fd)
        return WrittenSidecars(xmp=None, json=place.sidecars.path_of(json_path.name))


def _kind(media: MediaFacts | None) -> MediaKind:
    """Only the XMP name depends on the kind, and a failure writes no XMP: any kind gives the right JSON path."""
    return media.kind if media else "image"
