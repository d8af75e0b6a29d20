"""Open a watched file as the version that was checked, and nothing else.

Between two steps anyone who can write to a share can swap a file, or a folder on its path, for something else. So a
watched file is opened by walking its path from the watched root one folder at a time without following links (unless
the folder is configured to follow them), opened non-blocking (a FIFO put in its place cannot hang us), and the
descriptor's identity (device, inode, size, modification time) is compared with the version the ledger holds before
a byte of it is used. Every later read goes through that descriptor.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deepva_watch.fsutil import LINK_REFUSED, O_CLOEXEC, O_DIRECTORY, O_NOCTTY, O_NOFOLLOW


@dataclass(frozen=True)
class Identity:
    device: int
    inode: int


class VersionChanged(OSError):
    """The file at the path is not the version expected (another file, or this one changed). ``size`` and
    ``mtime_ns`` describe what is there now, when it is a regular file; None when it is something else."""

    def __init__(self, path: Path, why: str, size: int | None = None, mtime_ns: int | None = None) -> None:
        super().__init__(f"{path}: {why}")
        self.why = why
        self.size = size
        self.mtime_ns = mtime_ns


_FLAGS = os.O_RDONLY | O_CLOEXEC | O_NOCTTY


@contextmanager
def open_version(root: Path, relpath: str, *, follow_symlinks: bool, size: int, mtime_ns: int,
                 identity: Identity | None = None) -> Iterator[int]:
    """The file ``relpath`` under ``root`` as a read-only descriptor, if it is the regular file of that ``size`` and
    ``mtime_ns`` (and ``identity``, when known); raises :class:`VersionChanged` otherwise, or what ``open`` raises."""
    nofollow = 0 if follow_symlinks else O_NOFOLLOW
    parts = PurePosixPath(relpath).parts
    if not parts or any(part in ("..", "/") for part in parts):
        raise VersionChanged(root / relpath, "not a path inside its folder")
    directory = os.open(root, _FLAGS | O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, _FLAGS | O_DIRECTORY | nofollow, dir_fd=directory)
            except OSError as error:
                if error.errno in LINK_REFUSED:
                    raise VersionChanged(root / relpath, f"{part!r} on its path is no longer a folder") from None
                raise
            os.close(directory)
            directory = inner
        try:
            descriptor = os.open(parts[-1], _FLAGS | os.O_NONBLOCK | nofollow, dir_fd=directory)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.EMLINK):
                raise VersionChanged(root / relpath, "it is a symbolic link now") from None
            raise
    finally:
        os.close(directory)
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise VersionChanged(root / relpath, "it is no longer a regular file")
        if (info.st_size, info.st_mtime_ns) != (size, mtime_ns):
            raise VersionChanged(root / relpath, "it changed", info.st_size, info.st_mtime_ns)
        if identity is not None and (info.st_dev, info.st_ino) != (identity.device, identity.inode):
            raise VersionChanged(root / relpath, "another file took its place", info.st_size, info.st_mtime_ns)
        yield descriptor
    finally:
        os.close(descriptor)


def identity_of(descriptor: int) -> Identity:
    info = os.fstat(descriptor)
    return Identity(info.st_dev, info.st_ino)


def descriptor_path(descriptor: int) -> Path:
    """A path naming exactly this open file, for readers that take a path (libmediainfo, ffprobe)."""
    return Path(f"/proc/self/fd/{descriptor}")
