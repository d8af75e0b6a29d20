"""DISCOVER: find files in a watched folder and record each sighting in the ledger.

Two sources feed it: a watchdog observer (events are *hints*: they can be lost, merged or overflow) and full scans,
at start and periodically, that reconcile the folder with the ledger. Both end in the same call,
:func:`record_sighting`, so the ledger decides what is new; nothing here keeps state of its own.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler

from deepva_watch.config import FolderConfig
from deepva_watch.ledger import Ledger, Observation
from deepva_watch.pipeline import folder_key
from deepva_watch.sidecars import is_sidecar_name

log = structlog.get_logger("deepva_watch.discover")

#: Names that are never media: files being written by copy tools, OS litter, our own output.
_TEMPORARY_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", "~", ".swp")
_LITTER = {"thumbs.db", "desktop.ini", ".ds_store"}


@dataclass(frozen=True)
class Sighting:
    relpath: str
    size: int
    mtime_ns: int


def is_candidate(relpath: str, folder: FolderConfig) -> bool:
    """Whether a path (relative to the folder, POSIX separators) is worth recording at all."""
    parts = PurePosixPath(relpath).parts
    if not parts:
        return False
    name = parts[-1]
    lowered = name.lower()
    if any(part.startswith(".") for part in parts):  # hidden files and folders, AppleDouble (._x), our temp files
        return False
    if lowered in _LITTER or lowered.endswith(_TEMPORARY_SUFFIXES) or is_sidecar_name(name):
        return False
    if not folder.recursive and len(parts) > 1:
        return False
    if not any(fnmatch.fnmatch(relpath, pattern) or fnmatch.fnmatch(name, pattern) for pattern in folder.include):
        return False
    return not any(fnmatch.fnmatch(relpath, pattern) or fnmatch.fnmatch(name, pattern) for pattern in folder.exclude)


def relative(root: Path, path: Path) -> str | None:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return None


def scan(folder: FolderConfig) -> Iterator[Sighting]:
    """Walk the folder with ``os.scandir``, reusing the stat each entry already carries; symlinks are not followed."""
    root = folder.path.absolute()
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as error:
            log.warning("scan_unreadable", directory=str(directory), error=error.strerror)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if folder.recursive:
                        pending.append(Path(entry.path))
                    continue
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            relpath = relative(root, Path(entry.path))
            if relpath is not None and is_candidate(relpath, folder):
                yield Sighting(relpath, info.st_size, info.st_mtime_ns)


def record_sighting(ledger: Ledger, folder: FolderConfig, sighting: Sighting, now: float) -> Observation:
    observation = ledger.observe(folder_key(folder), sighting.relpath, sighting.size, sighting.mtime_ns, now)
    if observation.outcome in ("new", "revived"):
        log.info("discovered", folder=folder_key(folder), path=sighting.relpath, size=sighting.size,
                 asset_id=observation.asset_id, outcome=observation.outcome)
    return observation


def sighting_for(folder: FolderConfig, path: Path) -> Sighting | None:
    """Stat one path named by an event; None if it is not a candidate regular file (or is already gone)."""
    relpath = relative(folder.path.absolute(), path)
    if relpath is None or not is_candidate(relpath, folder):
        return None
    try:
        info = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return Sighting(relpath, info.st_size, info.st_mtime_ns)


def reconcile(ledger: Ledger, folder: FolderConfig, now: float) -> tuple[int, int]:
    """A full scan: record every file, and mark unsubmitted versions whose file is no longer there as gone.

    Refuses to mark anything gone when the root itself is missing or unreadable: a share that dropped for a moment
    must not look like "everything was deleted". Returns (files seen, versions marked gone).
    """
    root = folder.path.absolute()
    if not root.is_dir() or not os.access(root, os.R_OK | os.X_OK):
        log.warning("folder_unavailable", folder=str(root), note="skipping this scan; nothing is marked gone")
        return 0, 0
    seen = set()
    for sighting in scan(folder):
        seen.add(sighting.relpath)
        record_sighting(ledger, folder, sighting, now)
    gone = 0
    for relpath in ledger.known_paths(folder_key(folder)) - seen:
        if not (root / relpath).exists():
            gone += len(ledger.mark_gone(folder_key(folder), relpath, now))
    return len(seen), gone


class FolderEventHandler(FileSystemEventHandler):
    """Turns watchdog events into ledger sightings. Runs on watchdog's dispatch thread."""

    def __init__(self, ledger: Ledger, folder: FolderConfig, now: Callable[[], float], on_sighting: Callable[[], None]) -> None:
        self.ledger = ledger
        self.folder = folder
        self.now = now
        self.on_sighting = on_sighting

    def _saw(self, raw_path: str | bytes) -> None:
        path = Path(os.fsdecode(raw_path))
        sighting = sighting_for(self.folder, path)
        if sighting is not None:
            record_sighting(self.ledger, self.folder, sighting, self.now())
            self.on_sighting()

    def _vanished(self, raw_path: str | bytes) -> None:
        relpath = relative(self.folder.path.absolute(), Path(os.fsdecode(raw_path)))
        if relpath is not None and not (self.folder.path / relpath).exists():
            for asset_id in self.ledger.mark_gone(folder_key(self.folder), relpath, self.now()):
                log.info("gone", folder=folder_key(self.folder), path=relpath, asset_id=asset_id)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        try:
            if event.event_type in ("created", "modified", "closed"):
                self._saw(event.src_path)
            elif event.event_type == "moved":
                self._vanished(event.src_path)
                self._saw(event.dest_path)
            elif event.event_type == "deleted":
                self._vanished(event.src_path)
        except Exception as error:  # an event is only a hint; the next scan will catch what this one missed
            log.error("event_failed", event=event.event_type, error=repr(error)[:300])
