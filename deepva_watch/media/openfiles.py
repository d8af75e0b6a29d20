"""Is some process on this machine still holding a file open for writing?

A quiet period alone cannot tell a finished file from a writer that paused (a recorder waiting for its next chunk, a
copy stalled on a slow link). Linux shows every process's open files in ``/proc/<pid>/fd`` and their open flags in
``/proc/<pid>/fdinfo/<fd>``, so a local writer can be seen. One look lists the link target of every descriptor (no
file is touched, so a hung network mount cannot block it) and is reused for all files asked about in the next
moments; only descriptors pointing at an asked-about path have their flags read.

Limits, by nature: writers on other machines (SMB/NFS clients) are invisible here, the quiet period covers them; a
process of another user is visible only when the daemon runs as root (or with CAP_SYS_PTRACE); on other platforms the
answer is always "not known to be open".
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

PROC = Path("/proc")
#: How long one listing of /proc is reused; the settle stage asks for a batch of files at a time.
LISTING_TTL_SECONDS = 0.25
_ACCESS_MODE = 0o3  # O_ACCMODE
_READ_ONLY = 0o0


class OpenFiles:
    def __init__(self, proc: Path = PROC, ttl: float = LISTING_TTL_SECONDS) -> None:
        self._proc = proc
        self._ttl = ttl
        self._lock = threading.Lock()
        self._listed_at = -1e9
        self._by_target: dict[str, list[tuple[str, str]]] = {}
        self.available = proc.is_dir()
        self.partial = False  # some processes could not be looked at (not root)

    def _listing(self) -> dict[str, list[tuple[str, str]]]:
        with self._lock:
            if time.monotonic() - self._listed_at < self._ttl:
                return self._by_target
            by_target: dict[str, list[tuple[str, str]]] = {}
            partial = False
            try:
                pids = [name for name in os.listdir(self._proc) if name.isdigit()]
            except OSError:
                pids = []
            for pid in pids:
                fd_dir = f"{self._proc}/{pid}/fd"
                try:
                    fds = os.listdir(fd_dir)
                except PermissionError:
                    partial = True
                    continue
                except OSError:
                    continue  # the process ended
                for fd in fds:
                    try:
                        target = os.readlink(f"{fd_dir}/{fd}")
                    except OSError:
                        continue
                    if target.startswith("/"):
                        by_target.setdefault(target, []).append((pid, fd))
            self._by_target, self._listed_at, self.partial = by_target, time.monotonic(), partial
            return by_target

    def open_for_writing(self, path: Path) -> bool:
        """True when a process on this machine has ``path`` open with write access, as far as we can see."""
        if not self.available:
            return False
        target = os.path.realpath(path)
        for pid, fd in self._listing().get(target, ()):
            try:
                if os.readlink(f"{self._proc}/{pid}/fd/{fd}") != target:
                    continue  # closed since the listing (a "yes" is always fresh; a "no" may be a moment old)
                with open(f"{self._proc}/{pid}/fdinfo/{fd}", encoding="ascii", errors="replace") as info:
                    for line in info:
                        if line.startswith("flags:"):
                            if int(line.split()[1], 8) & _ACCESS_MODE != _READ_ONLY:
                                return True
                            break
            except (OSError, ValueError, IndexError):
                continue  # closed meanwhile, or not ours to read
        return False


_shared = OpenFiles()


def open_for_writing(path: Path) -> bool:
    """The process-wide instance, so that all settle workers share one listing."""
    return _shared.open_for_writing(path)
