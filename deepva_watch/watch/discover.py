"""DISCOVER: find files in a watched folder and record each sighting in the ledger.

Two sources feed it: file-system events (hints only: they can be lost, merged or overflow) and full scans, at start,
periodically, after an overflow and on every poll, that reconcile the folder with the ledger. Both end in the same
ledger calls, so the ledger decides what is new. When and how to scan is :mod:`.supervisor`'s business; this
module knows what a candidate file is, how to walk a tree cheaply, and how to turn a scan into ledger writes.

Cost matters here more than anywhere else: a newsroom share holds hundreds of thousands of files and is polled every
few seconds. A scan is one ``os.scandir`` per folder and one ``lstat`` per file (the one ``DirEntry`` caches), no
``Path`` objects, and a compiled name filter; the result is a plain ``relpath -> (size, mtime_ns)`` dict, compared in
memory with the previous scan or with :meth:`Ledger.latest_versions`, so an unchanged tree costs no ledger writes.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator, Mapping

import structlog

from deepva_watch import states
from deepva_watch.config import FolderConfig
from deepva_watch.ledger import Ledger, Observation
from deepva_watch.media.fingerprint import fingerprint
from deepva_watch.flow import folder_key
from deepva_watch.sidecars import is_sidecar_name
from deepva_watch.sidecars.naming import CORRUPT_MARKER, JSON_SUFFIX, XMP_SUFFIX

log = structlog.get_logger("deepva_watch.discover")

#: Names that are never media: files being written by copy tools, OS litter, our own output.
_TEMPORARY_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", "~", ".swp")
_LITTER = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})
_NEVER_SUFFIXES = _TEMPORARY_SUFFIXES + (XMP_SUFFIX, JSON_SUFFIX)
_CORRUPT_SIDECAR = XMP_SUFFIX + CORRUPT_MARKER

#: A scan's result: relative path (POSIX separators) -> (size, mtime_ns).
Snapshot = dict[str, tuple[int, int]]

#: How far a remount may shift a known file's modification time and still be the same file (SMB and FAT round to
#: 2 s; a server in another time zone shifts by whole hours), provided size and sampled content hash also agree.
_ROUNDING_NS = 2_000_000_000
_HOUR_NS = 3600 * 1_000_000_000


@dataclass(frozen=True)
class Sighting:
    relpath: str
    size: int
    mtime_ns: int


class NameFilter:
    """include/exclude globs, size limits and the never-media rules, compiled once per folder.

    Globs are matched against the relative path and against the name, as the config documents; the common case
    (include ``*``, nothing excluded) skips pattern matching altogether.
    """

    def __init__(self, folder: FolderConfig) -> None:
        self.recursive = folder.recursive
        self.min_size = folder.min_size
        self.max_size = folder.max_size
        self._include = None if "*" in folder.include else _compile(folder.include)
        self._exclude = _compile(folder.exclude) if folder.exclude else None
        self.plain = self._include is None and self._exclude is None  # only the never-media rules apply

    def name_ok(self, relpath: str, name: str) -> bool:
        if _never_media(name.lower()):
            return False
        if self._include is not None and not (self._include.match(relpath) or self._include.match(name)):
            return False
        return not (self._exclude is not None and (self._exclude.match(relpath) or self._exclude.match(name)))

    def size_ok(self, size: int) -> bool:
        return size >= self.min_size and (self.max_size is None or size <= self.max_size)


def _never_media(lowered: str) -> bool:
    return lowered.endswith(_NEVER_SUFFIXES) or lowered in _LITTER or _CORRUPT_SIDECAR in lowered


def never_recorded(name: str) -> bool:
    """Names no folder records whatever its patterns: hidden files (our temporary files among them), our sidecars,
    files that copy tools are still writing, OS litter. Events about them are dropped as they arrive: publishing
    alone raises several per file (temporary created, closed, renamed into the sidecar), and none can matter."""
    return name.startswith(".") or is_sidecar_name(name) or _never_media(name.lower())


def _compile(patterns: Iterable[str]) -> re.Pattern[str] | None:
    translated = [fnmatch.translate(pattern) for pattern in patterns]
    return re.compile("|".join(f"(?:{pattern})" for pattern in translated)) if translated else None


_filters: dict[int, tuple[FolderConfig, NameFilter]] = {}


def name_filter(folder: FolderConfig) -> NameFilter:
    cached = _filters.get(id(folder))
    if cached is None or cached[0] is not folder:
        cached = (folder, NameFilter(folder))
        _filters[id(folder)] = cached
    return cached[1]


def is_candidate(relpath: str, folder: FolderConfig) -> bool:
    """Whether a path (relative to the folder, POSIX separators) is worth recording at all (size aside)."""
    parts = PurePosixPath(relpath).parts
    if not parts or relpath.startswith("../"):
        return False
    name = parts[-1]
    if any(part.startswith(".") for part in parts[:-1]) or never_recorded(name):  # hidden folders; see never_recorded
        return False
    if not folder.recursive and len(parts) > 1:
        return False
    return name_filter(folder).name_ok(relpath, name)


def relative(root: Path, path: Path) -> str | None:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return None


def storable(name: str) -> bool:
    """Whether the ledger can keep this name: the file system gave bytes that decode as UTF-8 (a Latin-1 name from an
    old Mac or Windows tool does not; Python hands it over with surrogates that no UTF-8 text can hold)."""
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(name: str) -> str:
    """A name as a log line or a metric can carry it: undecodable bytes as ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


@dataclass
class ScanResult:
    """One walk of a tree. ``unreadable`` lists folders below the root that could not be listed (their files are
    unknown, not gone); ``unnamed`` the files and folders skipped because their names are not UTF-8 (shown escaped);
    ``root_error`` is set when the root itself could not be listed."""

    files: Snapshot = field(default_factory=dict)
    folders: int = 0
    unreadable: list[str] = field(default_factory=list)
    unnamed: list[str] = field(default_factory=list)
    root_error: str | None = None
    root_entries: int = 0


def scan_tree(folder: FolderConfig, under: str = "") -> ScanResult:
    """Walk the folder (or only its sub-folder ``under``): candidate regular files with their size and mtime.

    Symlinks are not followed unless the folder says so, and then every folder is entered once per (device, inode),
    so a link loop ends. FIFOs, sockets and device files are recognised from ``lstat`` alone and never opened.
    """
    root = str(folder.path.absolute())
    accept = name_filter(folder)
    plain = accept.plain
    follow = folder.follow_symlinks
    recursive = folder.recursive
    min_size, max_size = folder.min_size, folder.max_size
    result = ScanResult()
    files = result.files
    visited: set[tuple[int, int]] = set()
    if follow:
        try:
            info = os.stat(root)
            visited.add((info.st_dev, info.st_ino))
        except OSError:
            pass
    start = under.strip("/")
    if start and (not recursive or any(part.startswith(".") for part in start.split("/"))):
        return result
    if not storable(start):
        result.unnamed.append(shown(start + "/"))
        return result
    top = start + "/" if start else ""
    pending: list[tuple[str, str]] = [(top, root + "/" + start if start else root)]
    is_regular = stat.S_ISREG
    while pending:
        prefix, directory = pending.pop()
        try:
            iterator = os.scandir(directory)
        except OSError as error:
            if prefix != top or top:
                result.unreadable.append(prefix.rstrip("/"))
            else:
                result.root_error = error.strerror or repr(error)
            continue
        result.folders += 1
        at_top = prefix == top
        with iterator:
            for entry in iterator:  # one entry at a time: a share's top folder may hold hundreds of thousands
                if at_top:
                    result.root_entries += 1
                name = entry.name
                if name[0] == ".":
                    continue
                try:
                    if entry.is_dir(follow_symlinks=follow):
                        if recursive and not storable(name):
                            result.unnamed.append(shown(prefix + name + "/"))
                        elif recursive:
                            if follow:
                                info = entry.stat()
                                identity = (info.st_dev, info.st_ino)
                                if identity in visited:
                                    continue  # a link back into a folder we already walk: a loop, or a second way in
                                visited.add(identity)
                            pending.append((prefix + name + "/", entry.path))
                        continue
                    info = entry.stat(follow_symlinks=follow)
                except OSError:
                    continue  # vanished between listing and stat, or a dangling link
                if not is_regular(info.st_mode):
                    continue
                size = info.st_size
                if size < min_size or (max_size is not None and size > max_size):
                    continue
                lowered = name.lower()  # the never-media rules, inline: this line runs once per file of the tree
                if lowered.endswith(_NEVER_SUFFIXES) or lowered in _LITTER or _CORRUPT_SIDECAR in lowered:
                    continue
                relpath = prefix + name
                if not (plain or accept.name_ok(relpath, name)):
                    continue
                if storable(name):
                    files[relpath] = (size, info.st_mtime_ns)
                else:  # one such name must not stop the folder: skipped, and said so
                    result.unnamed.append(shown(relpath))
    return result


def scan(folder: FolderConfig) -> Iterator[Sighting]:
    """Every candidate file in the folder, as sightings."""
    for relpath, (size, mtime_ns) in scan_tree(folder).files.items():
        yield Sighting(relpath, size, mtime_ns)


def sighting_for(folder: FolderConfig, path: Path) -> Sighting | None:
    """Stat one path named by an event; None if it is not a candidate regular file (or is already gone)."""
    relpath = relative(folder.path.absolute(), path)
    if relpath is None or not storable(relpath) or not is_candidate(relpath, folder):
        return None  # a name the ledger cannot keep is reported by the scans
    try:
        info = os.stat(path, follow_symlinks=folder.follow_symlinks)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or not name_filter(folder).size_ok(info.st_size):
        return None
    return Sighting(relpath, info.st_size, info.st_mtime_ns)


# -- from scans and events to the ledger ---------------------------------------------------------------------------


def record_sighting(ledger: Ledger, folder: FolderConfig, sighting: Sighting, now: float) -> Observation:
    observation = ledger.observe(folder_key(folder), sighting.relpath, sighting.size, sighting.mtime_ns, now)
    if observation.outcome in ("new", "revived"):
        log.info("discovered", folder=folder_key(folder), path=sighting.relpath, size=sighting.size,
                 asset_id=observation.asset_id, outcome=observation.outcome)
    return observation


def record_sightings(ledger: Ledger, folder: FolderConfig, sightings: Iterable[Sighting], now: float) -> list[str]:
    """Record many sightings: never-seen paths in one transaction, the rest one by one. Returns the paths that got a
    new version."""
    key = folder_key(folder)
    batch = [(s.relpath, s.size, s.mtime_ns) for s in sightings]
    if not batch:
        return []
    inserted, leftover = ledger.observe_new_paths(key, batch, now)
    for relpath, asset_id in inserted[:50]:
        log.info("discovered", folder=key, path=relpath, asset_id=asset_id, outcome="new")
    if len(inserted) > 50:
        log.info("discovered_many", folder=key, files=len(inserted), note="only the first 50 are logged one by one")
    new = [relpath for relpath, _ in inserted]
    for relpath, size, mtime_ns in leftover:
        if record_sighting(ledger, folder, Sighting(relpath, size, mtime_ns), now).outcome in ("new", "revived"):
            new.append(relpath)
    return new


def changed_since(previous: Mapping[str, tuple[int, int]], current: Snapshot) -> list[Sighting]:
    """Files in ``current`` that ``previous`` did not have, or had with another size or mtime."""
    get = previous.get
    return [Sighting(relpath, *version) for relpath, version in current.items() if get(relpath) != version]


def changed_against_ledger(
    latest: Mapping[str, tuple[int, int, str]], current: Snapshot
) -> list[Sighting]:
    """Files whose newest ledger version differs from what is on disk (or that ended ``gone`` and are back)."""
    changed = []
    for relpath, (size, mtime_ns) in current.items():
        known = latest.get(relpath)
        if known is None or known[0] != size or known[1] != mtime_ns or known[2] == states.State.GONE:
            changed.append(Sighting(relpath, size, mtime_ns))
    return changed


def reidentify(ledger: Ledger, folder: FolderConfig, sighting: Sighting, now: float) -> bool:
    """After a remount, a known file may come back with its mtime rounded or shifted by whole hours.

    If its size matches the version already handed to DeepVA and its sampled content hash does too, it is the same
    file: the row takes the new mtime and nothing is submitted again. Anything else is a new version, as usual.
    """
    versions = ledger.versions(folder_key(folder), sighting.relpath)
    if not versions:
        return False
    latest = versions[-1]
    if latest.size != sighting.size or latest.content_hash is None or latest.state in states.UNSUBMITTED:
        return False
    shift = abs(latest.mtime_ns - sighting.mtime_ns)
    if not _remount_shift(shift):
        return False
    try:
        same = fingerprint(folder.path / sighting.relpath) == latest.content_hash
    except OSError:
        return False
    if same and ledger.adopt_mtime(latest.id, sighting.mtime_ns, now):
        log.info("reidentified", folder=folder_key(folder), path=sighting.relpath, asset_id=latest.asset_id,
                 shift_seconds=round(shift / 1e9, 3), note="same size and content after a remount; not submitted again")
        return True
    return False


def _remount_shift(shift_ns: int) -> bool:
    """Rounded to the file system's granularity, or moved by whole hours (time zone, DST) within a day."""
    if shift_ns <= _ROUNDING_NS:
        return True
    off_hour = min(shift_ns % _HOUR_NS, _HOUR_NS - shift_ns % _HOUR_NS)
    return shift_ns <= 26 * _HOUR_NS and off_hour <= _ROUNDING_NS


def vanished(folder: FolderConfig, relpaths: Iterable[str]) -> list[str]:
    """Of these paths, the ones really missing now (one ``lstat`` each): a scan that missed a file proves nothing."""
    root = folder.path.absolute()
    return [relpath for relpath in relpaths if not os.path.lexists(root / relpath)]


def mark_vanished(ledger: Ledger, folder: FolderConfig, relpaths: Iterable[str], now: float) -> int:
    ended = ledger.mark_gone_many(folder_key(folder), vanished(folder, relpaths), now)
    for relpath, asset_id in ended:
        log.info("gone", folder=folder_key(folder), path=relpath, asset_id=asset_id)
    return len(ended)


def apply_scan(
    ledger: Ledger,
    folder: FolderConfig,
    current: Snapshot,
    now: float,
    *,
    previous: Mapping[str, tuple[int, int]] | None = None,
    unreadable: Iterable[str] = (),
) -> tuple[list[str], int]:
    """Bring the ledger in line with one scan. Returns (paths with a new version, versions marked gone).

    With ``previous`` (the last scan, while polling) only the difference between the two scans is looked at; without
    it the scan is reconciled with the ledger itself, which costs one query however big the folder is. Files below an
    ``unreadable`` sub-folder are unknown, not gone.
    """
    key = folder_key(folder)
    blind = tuple(prefix + "/" for prefix in unreadable)
    if previous is not None:
        changed = changed_since(previous, current)
        missing: Iterable[str] = [relpath for relpath in previous if relpath not in current]
    else:
        latest = ledger.latest_versions(key)
        changed = changed_against_ledger(latest, current)
        changed = [s for s in changed if not _reidentified(ledger, folder, latest, s, now)]
        missing = [relpath for relpath, (_, _, state) in latest.items()
                   if state in states.UNSUBMITTED and relpath not in current]
    if blind:
        missing = [relpath for relpath in missing if not relpath.startswith(blind)]
    new = record_sightings(ledger, folder, changed, now)
    return new, mark_vanished(ledger, folder, missing, now)


def _reidentified(ledger: Ledger, folder: FolderConfig, latest: Mapping[str, tuple[int, int, str]],
                  sighting: Sighting, now: float) -> bool:
    known = latest.get(sighting.relpath)
    if known is None or known[0] != sighting.size or known[2] in states.UNSUBMITTED or known[2] == states.State.GONE:
        return False
    return reidentify(ledger, folder, sighting, now)


def root_problem(folder: FolderConfig) -> str | None:
    """Why the folder cannot be trusted right now (missing, not a folder, unreadable, anchor missing), or None."""
    root = folder.path.absolute()
    try:
        info = os.stat(root)
    except OSError as error:
        return f"the folder is not reachable ({error.strerror or repr(error)})"
    if not stat.S_ISDIR(info.st_mode):
        return "the path is no longer a folder"
    if not os.access(root, os.R_OK | os.X_OK):
        return "the folder is not readable"
    if folder.anchor_file and not os.path.exists(root / folder.anchor_file):
        return f"the anchor file {folder.anchor_file!r} is missing"
    return None


def reconcile(ledger: Ledger, folder: FolderConfig, now: float) -> tuple[int, int]:
    """A full scan reconciled with the ledger: record every new or changed file, mark vanished unsubmitted ones gone.

    Refuses to touch the ledger when the root is missing, unreadable or without its anchor file: a share that dropped
    for a moment must not look like "everything was deleted". Returns (files seen, versions marked gone).
    """
    problem = root_problem(folder)
    if problem is not None:
        log.warning("folder_unavailable", folder=folder_key(folder), reason=problem, note="nothing is marked gone")
        return 0, 0
    result = scan_tree(folder)
    if result.root_error is not None:
        log.warning("folder_unavailable", folder=folder_key(folder), reason=result.root_error, note="nothing is marked gone")
        return 0, 0
    _, gone = apply_scan(ledger, folder, result.files, now, unreadable=result.unreadable)
    return len(result.files), gone
