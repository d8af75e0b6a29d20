"""Which XMP file a media file may write into, so that two media never overwrite each other's sidecar.

``clip.mxf`` and its proxy ``clip.mp4`` both want ``clip.xmp`` under stem naming. A ``clip.xmp`` belongs to:

1. the file our own provenance names (``dvw:SourceName``), if we wrote it;
2. else the file whose extension ``photoshop:SidecarForExtension`` names (compared without regard to case);
3. else (a hand-made or foreign sidecar that names no file) the media file with that stem, *if it is the only one* in
   its folder: then we merge into it. When several files share the stem we cannot know whose it is, so we touch it
   not at all.

A media file that does not own the stem sidecar writes ``{name}.xmp`` (``clip.mp4.xmp``) instead, and a note says
why; once it has such a sidecar it keeps using it, so results do not move between files from one run to the next.

A sidecar that is not readable as XMP is never overwritten in place: if it would be ours, it is moved aside to
``<name>.corrupt-<UTC time>`` (a note says so) and a fresh one is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from deepva_watch.sidecars.naming import (
    CORRUPT_MARKER,
    extension_of,
    inside,
    is_sidecar_name,
    name_xmp_name,
    stem_xmp_name,
)
from deepva_watch.sidecars.rdf import NotAnXmpPacket
from deepva_watch.sidecars.xmp import ExistingSidecar, read_sidecar


@dataclass
class XmpClaim:
    path: Path
    existing: ExistingSidecar | None
    sidecar_for_extension: str | None  # set only for the stem form
    notes: list[str] = field(default_factory=list)


def claim_xmp(media_path: Path, *, folder: Path, stem_form: bool) -> XmpClaim:
    media_name = media_path.name
    name_path = inside(folder, name_xmp_name(media_path))
    stem_path = inside(folder, stem_xmp_name(media_path))
    if not stem_form or stem_path == name_path:
        return _take(name_path, sidecar_for_extension=None)

    fallback = _peek(name_path)
    if isinstance(fallback, ExistingSidecar) and fallback.written_by_us and fallback.source_name == media_name:
        return _take(name_path, sidecar_for_extension=None)

    extension = extension_of(media_name) or None
    current = _peek(stem_path)
    if current is None:
        return XmpClaim(stem_path, None, extension)
    if isinstance(current, NotAnXmpPacket):
        owner = None if _only_file_with_stem(media_path) else "another file with the same name"
    else:
        owner = _owner_if_not(current, media_path)
    if owner is None:
        return _take(stem_path, sidecar_for_extension=extension)
    claim = _take(name_path, sidecar_for_extension=None)
    claim.notes.insert(0, f"{stem_path.name} belongs to {owner}; wrote {name_path.name} instead")
    return claim


def _owner_if_not(sidecar: ExistingSidecar, media_path: Path) -> str | None:
    """None when the sidecar is ours to write; otherwise words naming whose it is."""
    media_name = media_path.name
    if sidecar.written_by_us and sidecar.source_name:
        return None if sidecar.source_name == media_name else sidecar.source_name
    recorded = sidecar.sidecar_for_extension
    if recorded:
        if recorded.casefold() == extension_of(media_name).casefold():
            return None
        return f"{Path(media_name).stem}.{recorded.lower()}"
    return None if _only_file_with_stem(media_path) else "another file with the same name"


def _only_file_with_stem(media_path: Path) -> bool:
    stem = Path(media_path.name).stem
    try:
        with os.scandir(media_path.parent) as entries:
            for entry in entries:
                name = entry.name
                if name == media_path.name or name.startswith(".") or is_sidecar_name(name):
                    continue
                if Path(name).stem == stem and entry.is_file():
                    return False
    except OSError:
        return True
    return True


def _peek(path: Path) -> ExistingSidecar | NotAnXmpPacket | None:
    if not path.exists():
        return None
    try:
        return read_sidecar(path)
    except NotAnXmpPacket as error:
        return error


def _take(path: Path, *, sidecar_for_extension: str | None) -> XmpClaim:
    found = _peek(path)
    if isinstance(found, NotAnXmpPacket):
        aside = _move_aside(path)
        return XmpClaim(path, None, sidecar_for_extension,
                        [f"{path.name} was not readable XMP ({found}); moved it to {aside.name} and wrote a new one"])
    return XmpClaim(path, found, sidecar_for_extension)


def _move_aside(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}{CORRUPT_MARKER}{stamp}")
    number = 1
    while target.exists():
        target = path.with_name(f"{path.name}{CORRUPT_MARKER}{stamp}-{number}")
        number += 1
    os.rename(path, target)
    return target
