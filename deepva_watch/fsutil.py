"""Replacing files so that a reader never sees half of one.

Newsroom tools and other daemons read our sidecars while we write them, and the machine may lose power at any moment.
A sidecar is therefore written to a hidden temporary file in the same folder (same file system, so the final rename is
atomic), flushed to disk, and only then renamed over the old one. The folder is synced afterwards so that the rename
itself survives a crash.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

DEFAULT_MODE = 0o644
TEMP_MARKER = ".tmp-"
_NAME_MAX = 255


def atomic_write(
    path: Path, write: Callable[[BinaryIO], None], *, mode_from: Path | None = None, sync_folder: bool = True
) -> None:
    """Replace ``path`` with what ``write`` puts into the stream it is given, all or nothing.

    The new file keeps the permission bits of ``mode_from`` (default: the file being replaced) so that a share's
    group-write setup survives our rewrite; a brand-new file gets 0o644 less the process umask. On any exception the
    temporary file is removed, the old file is untouched, and the exception propagates. ``sync_folder=False`` leaves
    syncing the folder to the caller (:func:`fsync_folder`), who writes several files there and syncs it once.
    """
    path = Path(path)
    folder = path.parent
    mode = _mode_of(mode_from if mode_from is not None else path)
    temp_path, fd = _create_temp(folder, path.name, fresh=mode is None)
    try:
        with os.fdopen(fd, "wb") as stream:
            write(stream)
            stream.flush()
            if mode is not None:
                os.fchmod(stream.fileno(), mode)
            os.fsync(stream.fileno())
        os.replace(temp_path, path)
    except BaseException:
        try:
            os.unlink(temp_path)
        except FileNotFoundError:
            pass
        raise
    if sync_folder:
        fsync_folder(folder)


def temp_name_for(name: str) -> str:
    """The one temporary name for ``name``: hidden (leading dot) so that folder watchers skip it, and fixed, so that a
    temporary file left by a process killed mid-write is simply overwritten by the next write of the same file (only
    one writer ever writes a given sidecar: the ledger hands its row to one worker). A short hash of the full name keeps
    names apart that had to be shortened to fit the file system's limit."""
    suffix = f"{TEMP_MARKER}{hashlib.blake2b(name.encode('utf-8', 'surrogateescape'), digest_size=6).hexdigest()}"
    budget = _NAME_MAX - len(suffix.encode()) - 1
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) > budget:
        name = encoded[:budget].decode("utf-8", "ignore")
    return f".{name}{suffix}"


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and TEMP_MARKER in name


def _create_temp(folder: Path, name: str, *, fresh: bool) -> tuple[Path, int]:
    """Open the fixed temporary file, never through a symlink planted at its name (it is removed instead: the name is
    ours).

    For a ``fresh`` file (nothing to take permissions from) it is created anew with 0o644, so that the kernel applies
    the umask, and a leftover of a write cut short is removed first; otherwise it is opened (or taken over) private
    and given the old file's bits before it is renamed into place.
    """
    candidate = folder / temp_name_for(name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_EXCL if fresh else os.O_TRUNC)
    mode = DEFAULT_MODE if fresh else 0o600
    try:
        return candidate, os.open(candidate, flags, mode)
    except FileExistsError:  # fresh: a leftover
        pass
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
    os.unlink(candidate)
    return candidate, os.open(candidate, flags, mode)


def _mode_of(source: Path) -> int | None:
    try:
        return stat.S_IMODE(os.stat(source).st_mode)
    except FileNotFoundError:
        return None


def fsync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # some file systems (and Windows) cannot open a folder; the rename is still atomic there
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
