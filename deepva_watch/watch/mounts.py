"""Which file system a folder lives on, and therefore whether inotify can see changes there.

inotify only reports changes made through this machine's kernel. On SMB, NFS, 9p and most FUSE file systems, files
written by other machines (the normal case for a newsroom share) raise no event at all (watchdog #409, #654), so
``watch: auto`` polls them. The mount table is read from ``/proc/self/mountinfo``; the folder belongs to the mount with
the longest mount point that contains its real path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MOUNTINFO = Path("/proc/self/mountinfo")

#: File systems where changes made elsewhere raise no inotify event. ``fuse.*`` (sshfs, rclone, s3fs, gcsfuse ...)
#: is matched by prefix. ``fuseblk`` (ntfs-3g on a local disk) is left out: every write to it goes through this kernel.
REMOTE_FILE_SYSTEMS = frozenset({
    "cifs", "smb3", "smbfs", "nfs", "nfs4", "9p", "fuse", "ceph", "glusterfs", "lustre", "gpfs", "afs", "ocfs2",
    "davfs", "vboxsf", "vmhgfs", "virtiofs", "beegfs", "orangefs", "ncpfs", "coda",
})


@dataclass(frozen=True)
class Mount:
    mount_point: str
    fstype: str
    source: str


@dataclass(frozen=True)
class ModeChoice:
    """How a folder is watched and why, for the log line that says so."""

    mode: str  # "events" or "poll"
    reason: str
    fstype: str | None


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    out, index = [], 0
    while index < len(field):
        if field[index] == "\\" and index + 3 < len(field) and field[index + 1:index + 4].isdigit():
            out.append(chr(int(field[index + 1:index + 4], 8)))
            index += 4
        else:
            out.append(field[index])
            index += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        separator = fields.index("-")
        if separator < 5 or separator + 2 >= len(fields):
            continue
        mounts.append(Mount(_unescape(fields[4]), fields[separator + 1], _unescape(fields[separator + 2])))
    return mounts


def mount_of(path: Path, mounts: list[Mount]) -> Mount | None:
    real = os.path.realpath(path)
    best: Mount | None = None
    for mount in mounts:
        point = mount.mount_point
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.mount_point)):
            best = mount  # the later of two equal mount points is the one on top
    return best


def is_remote(fstype: str) -> bool:
    return fstype in REMOTE_FILE_SYSTEMS or fstype.startswith("fuse.")


def choose_mode(setting: str, path: Path, mountinfo: Path = MOUNTINFO) -> ModeChoice:
    """``events`` and ``poll`` are taken as given; ``auto`` polls remote and FUSE file systems and uses events elsewhere."""
    try:
        mount = mount_of(path, parse_mountinfo(mountinfo.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        mount = None
    fstype = mount.fstype if mount else None
    if setting in ("events", "poll"):
        return ModeChoice(setting, "set in the config", fstype)
    if mount is None:
        return ModeChoice("events", "file system unknown (no /proc/self/mountinfo); events assumed", None)
    if is_remote(mount.fstype):
        return ModeChoice("poll", f"{mount.fstype} at {mount.mount_point} is a network or FUSE file system: inotify "
                                  f"does not see changes made by other machines", mount.fstype)
    return ModeChoice("events", f"{mount.fstype} at {mount.mount_point} is a local file system", mount.fstype)
