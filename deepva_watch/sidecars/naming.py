"""Where sidecars go. Paths come only from the media path, the watched root and the configured output folder:
nothing DeepVA returns (labels, names, ids) takes part, so no server answer can move a file elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from deepva_watch.fsutil import is_temp_name
from deepva_watch.media import MediaKind
from deepva_watch.sidecars.model import Naming, SidecarSettings

JSON_SUFFIX = ".deepva.json"
XMP_SUFFIX = ".xmp"
CORRUPT_MARKER = ".corrupt-"


#: The longest file name (one path component, in bytes) that ext4, XFS, btrfs, NTFS via SMB and most others allow.
NAME_MAX = 255


class UnsafeSidecarPath(ValueError):
    """A sidecar path would leave the folder it belongs in; nothing was written."""


class SidecarNameTooLong(UnsafeSidecarPath):
    """The media file's name leaves no room for a sidecar suffix within NAME_MAX; retrying cannot help, a person must
    rename the file (or set ``sidecars.naming: stem``)."""


def sidecar_paths(media_path: Path, *, watch_root: Path, settings: SidecarSettings, kind: MediaKind) -> tuple[Path, Path]:
    """(XMP, JSON) as planned, before any collision with another file's sidecar is resolved."""
    folder = sidecar_folder(media_path, watch_root=watch_root, settings=settings)
    form = xmp_form(settings.naming, kind)
    xmp_name = stem_xmp_name(media_path) if form == "stem" else name_xmp_name(media_path)
    return inside(folder, xmp_name), inside(folder, media_path.name + JSON_SUFFIX)


def is_sidecar_name(name: str) -> bool:
    """Our own files and their temporaries, so that discovery never submits them as media."""
    lowered = name.lower()
    return (
        lowered.endswith((XMP_SUFFIX, JSON_SUFFIX))
        or is_temp_name(name)
        or (XMP_SUFFIX + CORRUPT_MARKER) in lowered
    )


def xmp_form(naming: Naming, kind: MediaKind) -> Naming:
    if naming == "auto":
        return "name" if kind == "image" else "stem"
    return naming


def stem_xmp_name(media_path: Path) -> str:
    return _stem(media_path.name) + XMP_SUFFIX


def name_xmp_name(media_path: Path) -> str:
    return media_path.name + XMP_SUFFIX


def extension_of(name: str) -> str:
    """``clip.mxf`` → ``MXF``: upper case, as Adobe's tools write photoshop:SidecarForExtension for camera files."""
    stem = _stem(name)
    return name[len(stem) + 1 :].upper() if stem != name else ""


def _stem(name: str) -> str:
    # Path.stem would turn ".hidden" into ".hidden" and "a.b.mxf" into "a.b", which is what we want; guard only "".
    stem = Path(name).stem
    return stem or name


def sidecar_folder(media_path: Path, *, watch_root: Path, settings: SidecarSettings) -> Path:
    """Next to the media, or the mirror of its folder under the output folder."""
    relative = relative_to_root(media_path, watch_root)
    if settings.output_dir is None:
        return media_path.parent
    base = Path(os.path.normpath(settings.output_dir))
    folder = Path(os.path.normpath(base / relative.parent))
    if not _is_within(folder, base):
        raise UnsafeSidecarPath(f"{media_path} would map outside {base}")
    return folder


def relative_to_root(media_path: Path, watch_root: Path) -> Path:
    try:
        relative = Path(media_path).relative_to(watch_root)
    except ValueError as error:
        raise UnsafeSidecarPath(f"{media_path} is not inside the watched folder {watch_root}") from error
    if any(part in ("..", "") for part in relative.parts) or relative.is_absolute() or not relative.parts:
        raise UnsafeSidecarPath(f"{media_path} is not a file inside {watch_root}")
    return relative


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, after making sure ``name`` is one plain file name."""
    if not name or name in (".", "..") or "/" in name or "\x00" in name or os.sep in name:
        raise UnsafeSidecarPath(f"not a plain file name: {name!r}")
    length = len(name.encode("utf-8", "surrogateescape"))
    if length > NAME_MAX:
        raise SidecarNameTooLong(f"sidecar name is too long for the file system ({length} bytes, at most {NAME_MAX}): "
                                 f"{name[:60]!r}…")
    path = folder / name
    if path.parent != folder or not _is_within(Path(os.path.normpath(path)), Path(os.path.normpath(folder))):
        raise UnsafeSidecarPath(f"{path} is not inside {folder}")
    return path


def _is_within(path: Path, base: Path) -> bool:
    try:
        return os.path.commonpath([os.path.abspath(path), os.path.abspath(base)]) == os.path.abspath(base)
    except ValueError:
        return False
