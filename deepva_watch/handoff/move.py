"""Move a media file and its sidecars into another folder together, never over another file.

The new name is chosen (and committed by the caller) before anything moves: the file's own name, or ``name (1).ext``,
``name (2).ext`` … where the media or one of its sidecars' names is taken. Moving is then repeatable: a file already at
its new place and gone from the old one is done, and so is one at both places with the same content (a crash between
placing and removing), so a crash half way is finished by the next try. A file is placed with a hard link, which
fails rather than replace a name taken meanwhile (a rename would replace it), then the old name is removed; where
links are not allowed (some shares, ``fs.protected_hardlinks`` on a file of another user) it is renamed. Across file
systems it is copied to a hidden temporary next to its new place, synced, checked (size and sampled fingerprint) and
placed the same way before the original is removed. Sidecars move first and the media last, so that a media file
never stands in its new folder without its results.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from deepva_watch.fsutil import fsync_folder, temp_name_for
from deepva_watch.media.fingerprint import fingerprint

MAX_SUFFIX = 1000


class MoveRefused(Exception):
    """The move cannot be done as planned (a name taken meanwhile by another file, a copy that differs)."""


def plan_move(media: Path, sidecars: Sequence[Path], folder: Path) -> Path:
    """The media's new path in ``folder``: a name at which neither it nor any of its sidecars would replace a file."""
    stem, suffix = _split(media.name)
    for number in range(MAX_SUFFIX):
        name = media.name if number == 0 else f"{stem} ({number}){suffix}"
        candidate = folder / name
        if not any(os.path.lexists(path) for path in [candidate, *(sidecar_target(s, media, candidate)
                                                                  for s in sidecars)]):
            return candidate
    raise MoveRefused(f"no free name for {media.name} in {folder} (tried {MAX_SUFFIX})")


def sidecar_target(sidecar: Path, media: Path, new_media: Path) -> Path:
    """A sidecar's name follows its media's: ``clip.mov.xmp`` → ``clip (1).mov.xmp``, ``clip.xmp`` → ``clip (1).xmp``,
    ``clip.mov.deepva.json`` → ``clip (1).mov.deepva.json``."""
    name = sidecar.name
    if name.startswith(media.name):
        return new_media.parent / (new_media.name + name[len(media.name):])
    old_stem, new_stem = _split(media.name)[0], _split(new_media.name)[0]
    if name.startswith(old_stem):
        return new_media.parent / (new_stem + name[len(old_stem):])
    return new_media.parent / name


def move_together(media: Path, sidecars: Sequence[Path], new_media: Path) -> None:
    """Sidecars first, then the media; each done once (see the module's note). Raises OSError or MoveRefused."""
    new_media.parent.mkdir(parents=True, exist_ok=True)
    for sidecar in sidecars:
        _move(sidecar, sidecar_target(sidecar, media, new_media))
    _move(media, new_media)
    fsync_folder(new_media.parent)
    fsync_folder(media.parent)


def _move(source: Path, target: Path) -> None:
    if not os.path.lexists(source):
        if os.path.lexists(target):
            return  # moved by an earlier try
        raise FileNotFoundError(errno.ENOENT, "no longer there to move", str(source))
    if os.path.lexists(target):
        if not _same_content(source, target):
            raise MoveRefused(f"{target} was taken by another file meanwhile; nothing was overwritten")
        os.unlink(source)  # placed by an earlier try, which stopped before it removed the original
        return
    try:
        _place(source, target)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        _copy_across(source, target)
        return
    os.unlink(source)


def _copy_across(source: Path, target: Path) -> None:
    temporary = target.with_name(temp_name_for(target.name))
    shutil.copy2(source, temporary)  # contents, times and mode
    with open(temporary, "rb") as copied:
        os.fsync(copied.fileno())
    if not _same_content(source, temporary):
        os.unlink(temporary)
        raise MoveRefused(f"the copy of {source} to {target.parent} differs from the original; the original stays")
    try:
        _place(temporary, target)
    except MoveRefused:
        os.unlink(temporary)
        raise
    if os.path.lexists(temporary):
        os.unlink(temporary)
    os.unlink(source)


def _place(source: Path, target: Path) -> None:
    """``source`` also at ``target``, never over a file there: a hard link where allowed, else a rename."""
    try:
        os.link(source, target, follow_symlinks=False)
    except FileExistsError:
        raise MoveRefused(f"{target} was taken by another file meanwhile; nothing was overwritten") from None
    except OSError as error:
        if error.errno not in _NO_LINKS:
            raise
        os.rename(source, target)


#: Why a hard link may be refused where a rename works.
_NO_LINKS = frozenset({errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def _same_content(one: Path, other: Path) -> bool:
    try:
        if os.path.samefile(one, other):
            return True
        return os.path.getsize(one) == os.path.getsize(other) and fingerprint(one) == fingerprint(other)
    except OSError:
        return False


def _split(name: str) -> tuple[str, str]:
    """``clip.mov`` → (``clip``, ``.mov``); a name without an extension keeps all of it as its stem."""
    stem, dot, extension = name.rpartition(".")
    return (stem, dot + extension) if stem else (name, "")
