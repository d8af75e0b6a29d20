"""Replacing files so that a reader never sees half of one.

Newsroom tools and other daemons read our sidecars while we write them, and the machine may lose power at any moment.
A sidecar is therefore written to a hidden temporary file in the same folder (same file system, so the final rename is
atomic), flushed to disk, and only then renamed over the old one. The folder is synced afterwards so that the rename
itself survives a crash.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

DEFAULT_MODE = 0o644
TEMP_MARKER = ".tmp-"
_NAME_MAX = 255


def atomic_write(path: Path, write: Callable[[BinaryIO], None], *, mode_from: Path | None = None) -> None:
    """Replace ``path`` with what ``write`` puts into the stream it is given, all or nothing.

    The new file keeps the permission bits of ``mode_from`` (default: the file being replaced) so that a share's
    group-write setup survives our rewrite; a brand-new file gets 0o644 less the process umask. On any exception the
    temporary file is removed, the old file is untouched, and the exception propagates.
    """
    path = Path(path)
    folder = path.parent
    mode = _mode_for(mode_from if mode_from is not None else path)
    temp_path, fd = _create_temp(folder, path.name)
    try:
        with os.fdopen(fd, "wb") as stream:
            write(stream)
            stream.flush()
            os.fchmod(stream.fileno(), mode)
            os.fsync(stream.fileno())
        os.replace(temp_path, path)
    except BaseException:
        try:
            os.unlink(temp_path)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


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


def _create_temp(folder: Path, name: str) -> tuple[Path, int]:
    """Open (or take over and truncate) the fixed temporary file; never through a symlink planted at its name."""
    candidate = folder / temp_name_for(name)
    return candidate, os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)


def _mode_for(source: Path) -> int:
    try:
        return stat.S_IMODE(source.stat().st_mode)
    except FileNotFoundError:
        return DEFAULT_MODE & ~_current_umask()


def _current_umask() -> int:
    """Read the umask without changing it: ``os.umask`` can only be read by setting it, which races other threads."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _fsync_folder(folder: Path) -> None:
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
