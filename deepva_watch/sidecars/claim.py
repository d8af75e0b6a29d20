"""Which XMP file a media file may write into, so that two media never overwrite each other's sidecar.

``clip.mxf`` and its proxy ``clip.mp4`` both want ``clip.xmp`` under stem naming. A ``clip.xmp`` belongs to:

1. the file our own provenance names (``dvw:SourceName``), if we wrote it;
2. else the file whose extension ``photoshop:SidecarForExtension`` names (compared without regard to case);
3. else (a hand-made or foreign sidecar that names no file) the media file with that stem, *if it is the only one* in
   its folder: then we merge into it. When several files share the stem we cannot know whose it is, so we touch it
   not at all.

A media file that does not own the stem sidecar writes ``{name}.xmp`` (``clip.mp4.xmp``) instead, and a note says
why; once it has such a sidecar it keeps using it, so results do not move between files from one run to the next.

Existing sidecars are read through the open folder only, never through a link, without blocking, and only when they
are regular files of at most :data:`XMP_READ_LIMIT` bytes:

* a sidecar that is not readable XMP, or larger than that, is never overwritten in place: if it would be ours, it is
  moved aside to ``<name>.corrupt-<UTC time>`` (a note says so) and a fresh one is written;
* anything but a regular file at a sidecar's name (a FIFO, a device, a socket, a folder, a symbolic link) is neither
  opened nor replaced: at the stem name it counts as another file's (``{name}.xmp`` is written instead, with a note);
  where no other name is left, :class:`UnsafeSidecarPath` is raised and no XMP is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from deepva_watch.fsutil import FileTooLarge, NotARegularFile, exists_at, read_regular_at
from deepva_watch.sidecars.folders import OpenFolder, SidecarPlace
from deepva_watch.sidecars.naming import (
    CORRUPT_MARKER,
    UnsafeSidecarPath,
    extension_of,
    is_sidecar_name,
    name_xmp_name,
    stem_xmp_name,
)
from deepva_watch.sidecars.rdf import NotAnXmpPacket
from deepva_watch.sidecars.xmp import ExistingSidecar, parse_sidecar

#: The most of an existing XMP sidecar that is ever read: far beyond any real one (a long clip's markers take well
#: under a megabyte), and small enough that a huge file planted at the name cannot fill the memory.
XMP_READ_LIMIT = 16 * 1024 * 1024


@dataclass
class XmpClaim:
    name: str  # in the sidecar folder
    path: Path
    existing: ExistingSidecar | None
    sidecar_for_extension: str | None  # set only for the stem form
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class NotAFile:
    """Something other than a regular file has the name: it is left alone."""

    kind: str


Found = ExistingSidecar | NotAnXmpPacket | NotAFile | None


def claim_xmp(place: SidecarPlace, media_name: str, *, stem_form: bool) -> XmpClaim:
    folder = place.sidecars
    name_path = folder.path_of(name_xmp_name(Path(media_name)))  # plain names within NAME_MAX, or UnsafeSidecarPath
    stem_path = folder.path_of(stem_xmp_name(Path(media_name)))
    if not stem_form or stem_path == name_path:
        return _take(folder, name_path, _peek(folder, name_path.name), sidecar_for_extension=None)

    fallback = _peek(folder, name_path.name)
    if isinstance(fallback, ExistingSidecar) and fallback.written_by_us and fallback.source_name == media_name:
        return _take(folder, name_path, fallback, sidecar_for_extension=None)

    extension = extension_of(media_name) or None
    current = _peek(folder, stem_path.name)
    if current is None:
        return XmpClaim(stem_path.name, stem_path, None, extension)
    if isinstance(current, NotAFile):
        reason: str | None = f"is {current.kind}, not a regular file, and is left alone"
    elif isinstance(current, NotAnXmpPacket):
        reason = None if _only_file_with_stem(place, media_name) else "belongs to another file with the same name"
    else:
        owner = _owner_if_not(current, place, media_name)
        reason = None if owner is None else f"belongs to {owner}"
    if reason is None:
        return _take(folder, stem_path, current, sidecar_for_extension=extension)
    claim = _take(folder, name_path, fallback, sidecar_for_extension=None)
    claim.notes.insert(0, f"{stem_path.name} {reason}; wrote {name_path.name} instead")
    return claim


def _owner_if_not(sidecar: ExistingSidecar, place: SidecarPlace, media_name: str) -> str | None:
    """None when the sidecar is ours to write; otherwise words naming whose it is."""
    if sidecar.written_by_us and sidecar.source_name:
        return None if sidecar.source_name == media_name else sidecar.source_name
    recorded = sidecar.sidecar_for_extension
    if recorded:
        if recorded.casefold() == extension_of(media_name).casefold():
            return None
        return f"{Path(media_name).stem}.{recorded.lower()}"
    return None if _only_file_with_stem(place, media_name) else "another file with the same name"


def _only_file_with_stem(place: SidecarPlace, media_name: str) -> bool:
    stem = Path(media_name).stem
    try:
        with os.scandir(place.media_folder().fd) as entries:
            for entry in entries:
                name = entry.name
                if name == media_name or name.startswith(".") or is_sidecar_name(name):
                    continue
                if Path(name).stem == stem and entry.is_file():
                    return False
    except OSError:
        return True
    return True


def _peek(folder: OpenFolder, name: str) -> Found:
    try:
        data = read_regular_at(folder.fd, name, limit=XMP_READ_LIMIT)
    except NotARegularFile as error:
        return NotAFile(error.kind)
    except FileTooLarge as error:
        return NotAnXmpPacket(f"{error.size} bytes, more than the {XMP_READ_LIMIT // (1024 * 1024)} MiB a sidecar is "
                              "read up to")
    if data is None:
        return None
    try:
        return parse_sidecar(data)
    except NotAnXmpPacket as error:
        return error


def _take(folder: OpenFolder, path: Path, found: Found, *, sidecar_for_extension: str | None) -> XmpClaim:
    name = path.name
    if isinstance(found, NotAFile):
        raise UnsafeSidecarPath(f"{path} is {found.kind}, not a regular file: it is left alone and no XMP sidecar is "
                                "written")
    if isinstance(found, NotAnXmpPacket):
        aside = _move_aside(folder, name)
        return XmpClaim(name, path, None, sidecar_for_extension,
                        [f"{name} was not readable XMP ({found}); moved it to {aside} and wrote a new one"])
    return XmpClaim(name, path, found, sidecar_for_extension)


def _move_aside(folder: OpenFolder, name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = f"{name}{CORRUPT_MARKER}{stamp}"
    number = 1
    while exists_at(folder.fd, target):
        target = f"{name}{CORRUPT_MARKER}{stamp}-{number}"
        number += 1
    os.rename(name, target, src_dir_fd=folder.fd, dst_dir_fd=folder.fd)
    return target
