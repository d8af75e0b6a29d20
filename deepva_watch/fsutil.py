"""Replacing files so that a reader never sees half of one, and reading files that someone else may have planted.

Newsroom tools and other daemons read our sidecars while we write them, and the machine may lose power at any moment.
A sidecar is therefore written to a hidden temporary file in the same folder (same file system, so the final rename is
atomic), flushed to disk, and only then renamed over the old one. The folder is synced afterwards so that the rename
itself survives a crash.

Anyone who may write to a share may also put a FIFO, a device or a symbolic link where a sidecar belongs, or swap a
folder for a link. The ``*_at`` functions therefore work relative to an open folder (``dir_fd``), never follow a link
at the file's name, open nothing but regular files, and read at most a given number of bytes.
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
O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
O_NOCTTY = getattr(os, "O_NOCTTY", 0)
#: What open(2) says for a link met with O_NOFOLLOW (ELOOP; EMLINK on FreeBSD) or a non-folder met with O_DIRECTORY.
LINK_REFUSED = frozenset({errno.ELOOP, errno.EMLINK, errno.ENOTDIR})
_READ_FLAGS = os.O_RDONLY | O_NOFOLLOW | os.O_NONBLOCK | O_CLOEXEC | O_NOCTTY
_CHUNK = 1024 * 1024


class NotARegularFile(Exception):
    """A name we would read or replace holds something else (a FIFO, device, socket, folder or symbolic link): it is
    neither opened nor replaced."""

    def __init__(self, name: str, kind: str) -> None:
        super().__init__(f"{name} is {kind}, not a regular file")
        self.name = name
        self.kind = kind


class FileTooLarge(Exception):
    """A file holds more bytes than its reader accepts; nothing of it was read."""

    def __init__(self, name: str, size: int, limit: int) -> None:
        super().__init__(f"{name} holds more than {limit} bytes ({size}), more than is ever read of it")
        self.name = name
        self.size = size
        self.limit = limit


def atomic_write_at(
    dir_fd: int, name: str, write: Callable[[BinaryIO], None], *, mode: int | None = None, sync_folder: bool = True
) -> None:
    """Replace ``name`` in the open folder ``dir_fd`` with what ``write`` puts into the stream it is given, all or
    nothing.

    The new file gets ``mode``; by default the permission bits of the regular file it replaces, so that a share's
    group-write setup survives our rewrite, and 0o644 less the process umask when there is none. Raises
    :class:`NotARegularFile`, before anything is written, when the name holds anything but a regular file. On any
    exception the temporary file is removed, the old file is untouched, and the exception propagates.
    ``sync_folder=False`` leaves syncing the folder to the caller (:func:`fsync_dir`), who writes several files there
    and syncs it once.
    """
    if mode is None:
        mode = regular_mode_at(dir_fd, name)
    temp_name, fd = _create_temp(dir_fd, name, fresh=mode is None)
    try:
        with os.fdopen(fd, "wb") as stream:
            write(stream)
            stream.flush()
            if mode is not None:
                os.fchmod(stream.fileno(), mode)
            os.fsync(stream.fileno())
        os.replace(temp_name, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(temp_name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise
    if sync_folder:
        fsync_dir(dir_fd)


def atomic_write(
    path: Path, write: Callable[[BinaryIO], None], *, mode_from: Path | None = None, sync_folder: bool = True
) -> None:
    """:func:`atomic_write_at` for a path whose folder the caller trusts (it is opened by path, links and all).

    ``mode_from`` names another file to take the permission bits from.
    """
    path = Path(path)
    mode = None
    if mode_from is not None:
        try:
            mode = stat.S_IMODE(os.stat(mode_from).st_mode)
        except FileNotFoundError:
            pass
    folder = os.open(path.parent, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    try:
        atomic_write_at(folder, path.name, write, mode=mode, sync_folder=sync_folder)
    finally:
        os.close(folder)


def regular_mode_at(dir_fd: int, name: str) -> int | None:
    """The permission bits of the regular file ``name`` in ``dir_fd``; None when there is none. Raises
    :class:`NotARegularFile` for anything else at that name (a link is not followed)."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise NotARegularFile(name, describe_kind(info.st_mode))
    return stat.S_IMODE(info.st_mode)


def read_regular_at(dir_fd: int, name: str, *, limit: int, head: bool = False) -> bytes | None:
    """The bytes of the regular file ``name`` in ``dir_fd``, or None when there is none.

    Never blocks and never opens anything but a regular file: the name is looked at without following a link before
    it is opened (non-blocking, no link followed) and the open file is checked again. Raises
    :class:`NotARegularFile` for anything else there and :class:`FileTooLarge` (having read at most ``limit`` + 1
    bytes) for a file larger than ``limit``; with ``head``, a larger file's first ``limit`` bytes are returned instead.
    """
    if regular_mode_at(dir_fd, name) is None:
        return None
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.EMLINK, errno.ENXIO, errno.EOPNOTSUPP):  # swapped for a link or socket
            raise NotARegularFile(name, "no longer a regular file") from error
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(name, describe_kind(info.st_mode))
        if info.st_size > limit and not head:
            raise FileTooLarge(name, info.st_size, limit)
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit and not head:  # it grew after fstat
            raise FileTooLarge(name, total, limit)
        return b"".join(chunks)[:limit]
    finally:
        os.close(fd)


def exists_at(dir_fd: int, name: str) -> bool:
    """Whether anything (a dangling link too) has ``name`` in ``dir_fd``."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def describe_kind(mode: int) -> str:
    """``a FIFO``, ``a symbolic link``, …: what a non-regular file is, for messages."""
    kinds = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a folder"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    for test, kind in kinds:
        if test(mode):
            return kind
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


def temp_name_for(name: str) -> str:
    """The one temporary name for ``name``: hidden (leading dot) so that folder watchers skip it, and fixed, so that a
    temporary file left by a process killed mid-write is simply replaced by the next write of the same file (only
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


def _create_temp(dir_fd: int, name: str, *, fresh: bool) -> tuple[str, int]:
    """Create the fixed temporary file anew (exclusive: never through a link or into a file someone holds open).

    Whatever has its name already, the leftover of a write cut short or a planted link, is removed first: the name is
    ours. A ``fresh`` file (nothing to take permissions from) is created with 0o644, so that the kernel applies the
    umask; otherwise it is created private and given the old file's bits before it is renamed into place.
    """
    temp_name = temp_name_for(name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC
    mode = DEFAULT_MODE if fresh else 0o600
    try:
        return temp_name, os.open(temp_name, flags, mode, dir_fd=dir_fd)
    except FileExistsError:
        pass
    os.unlink(temp_name, dir_fd=dir_fd)
    return temp_name, os.open(temp_name, flags, mode, dir_fd=dir_fd)


def fsync_dir(dir_fd: int) -> None:
    """Make the renames in the open folder ``dir_fd`` durable."""
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename is still atomic there


def fsync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable."""
    try:
        fd = os.open(folder, os.O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    except OSError:
        return  # some file systems (and Windows) cannot open a folder; the rename is still atomic there
    try:
        fsync_dir(fd)
    finally:
        os.close(fd)
