"""The inotify watch limit, read from the kernel's public files rather than from watchdog's internals.

inotify needs one watch per folder, and ``fs.inotify.max_user_watches`` caps the watches of all of a user's processes
together. A tree that does not fit is watched only in part, and the unwatched part stays silent, so before a folder is
watched with events its folders are counted against what is left of the limit. The watches in use are counted from
``/proc/<pid>/fdinfo``, where the kernel lists one ``inotify wd:`` line per watch of each inotify descriptor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
WATCH_LIMIT_SYSCTL = "fs.inotify.max_user_watches"
MAX_USER_WATCHES = PROC / "sys/fs/inotify/max_user_watches"


@dataclass(frozen=True)
class WatchBudget:
    limit: int
    in_use: int
    needed: int

    @property
    def fits(self) -> bool:
        return self.needed <= self.limit - self.in_use

    def describe(self) -> str:
        return (f"{self.needed} folder(s) to watch, {self.in_use} watch(es) already in use by this user, "
                f"limit {self.limit} ({WATCH_LIMIT_SYSCTL})")


def count_folders(root: Path, *, recursive: bool, follow_symlinks: bool = False) -> int:
    """Folders inotify needs one watch each for: the root and, when recursive, every visible folder below it."""
    if not recursive:
        return 1
    count = 0
    stack = [str(root)]
    while stack:
        current = stack.pop()
        count += 1
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=follow_symlinks):
                            stack.append(entry.path)
                    except OSError:
                        continue
        except OSError:
            continue
    return count


def watch_limit(limit_file: Path = MAX_USER_WATCHES) -> int | None:
    try:
        return int(limit_file.read_text().strip())
    except (OSError, ValueError):
        return None


def watches_in_use(proc: Path = PROC, uid: int | None = None) -> int:
    """inotify watches held by the processes of ``uid`` (default: ours) that we may look at."""
    uid = os.getuid() if uid is None else uid
    try:
        pids = [name for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return 0
    total = 0
    for pid in pids:
        try:
            if os.stat(proc / pid).st_uid == uid:
                total += process_watches(pid, proc)
        except OSError:
            continue
    return total


def process_watches(pid: str = "self", proc: Path = PROC) -> int:
    """inotify watches held by one process, over all its inotify descriptors."""
    total = 0
    try:
        fds = os.listdir(proc / pid / "fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            if os.readlink(proc / pid / "fd" / fd) != "anon_inode:inotify":
                continue
            with open(proc / pid / "fdinfo" / fd, encoding="ascii", errors="replace") as info:
                total += sum(1 for line in info if line.startswith("inotify wd:"))
        except OSError:
            continue
    return total


def watch_budget(root: Path, *, recursive: bool, follow_symlinks: bool = False,
                 limit_file: Path = MAX_USER_WATCHES, proc: Path = PROC) -> WatchBudget | None:
    """The watches a tree needs against what is left of the limit; None where the limit cannot be read."""
    limit = watch_limit(limit_file)
    if limit is None:
        return None
    needed = count_folders(root, recursive=recursive, follow_symlinks=follow_symlinks)
    return WatchBudget(limit=limit, in_use=watches_in_use(proc), needed=needed)
