"""DISCOVER: find files in a watched folder and record each sighting in the ledger.

Two sources feed it: file-system events (hints only: they can be lost, merged or overflow) and full scans, at start,
periodically, after an overflow and on every poll, that reconcile the folder with the ledger. Both end in the same
ledger calls, so the ledger decides what is new. When and how to scan is :mod:`.supervisor`'s business; this
module knows what a candidate file is, how to walk a tree cheaply, and how to turn a scan into ledger writes.

Cost matters here more than anywhere else: a newsroom share holds up to a million files and is polled every few
seconds. A scan is one ``os.scandir`` per folder and one ``lstat`` per entry (the one ``DirEntry`` caches), no
``Path`` objects, and a compiled name filter; the result is a :class:`~.snapshot.Snapshot` (per folder, the names in
one string and sizes and mtimes in two arrays), compared folder by folder with the previous scan, or with the ledger
read page by page in path order, so an unchanged tree costs no ledger writes and no dictionary of every file. What a
scan finds is written in transactions of :data:`CHUNK` files.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Collection, Iterable, Iterator

import structlog

from deepva_watch import states
from deepva_watch.config import FolderConfig, NewerThan, newer_than_cutoff
from deepva_watch.ledger import Ledger, Observation
from deepva_watch.media.fingerprint import fingerprint
from deepva_watch.flow import folder_key
from deepva_watch.sidecars import is_sidecar_name
from deepva_watch.sidecars.naming import CORRUPT_MARKER, JSON_SUFFIX, XMP_SUFFIX
from deepva_watch.watch.snapshot import Known, Listing, by_folder, folder_changes, unlisted
from deepva_watch.watch.snapshot import Sighting as Sighting, Snapshot as Snapshot  # what callers of a scan meet

log = structlog.get_logger("deepva_watch.discover")

#: Names that are never media: files being written by copy tools, OS litter, our own output.
_TEMPORARY_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", "~", ".swp")
_LITTER = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})
_NEVER_SUFFIXES = _TEMPORARY_SUFFIXES + (XMP_SUFFIX, JSON_SUFFIX)
_CORRUPT_SIDECAR = XMP_SUFFIX + CORRUPT_MARKER

#: Files recorded per ledger transaction while a scan is applied, and paths read from the ledger per page.
CHUNK = 10_000
#: New files of one scan logged one by one; the rest are counted in one line.
_LOGGED_ONE_BY_ONE = 50

#: How far a remount may shift a known file's modification time and still be the same file (SMB and FAT round to
#: 2 s; a server in another time zone shifts by whole hours), provided size and sampled content hash also agree.
_ROUNDING_NS = 2_000_000_000
_HOUR_NS = 3600 * 1_000_000_000


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

    snapshot: Snapshot = field(default_factory=Snapshot)
    folders: int = 0
    unreadable: list[str] = field(default_factory=list)
    unnamed: list[str] = field(default_factory=list)
    root_error: str | None = None
    root_entries: int = 0

    @property
    def files(self) -> dict[str, tuple[int, int]]:
        """``relpath -> (size, mtime_ns)``, built on each call: for tools and tests, not for a million files."""
        return dict(self.snapshot.items())


def scan_tree(folder: FolderConfig, under: str = "", *,
              each_folder: Callable[[str, Listing], None] | None = None) -> ScanResult:
    """Walk the folder (or only its sub-folder ``under``): candidate regular files with their size and mtime.

    Symlinks are not followed unless the folder says so, and then every folder is entered once per (device, inode),
    so a link loop ends. FIFOs, sockets and device files are recognised from ``lstat`` alone and never opened.
    ``each_folder`` is handed each folder's listing as soon as it is complete (a poll records what is new meanwhile).
    """
    root = str(folder.path.absolute())
    accept = name_filter(folder)
    plain = accept.plain
    follow = folder.follow_symlinks
    recursive = folder.recursive
    min_size = folder.min_size
    max_size = folder.max_size if folder.max_size is not None else 1 << 63
    result = ScanResult()
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
    is_regular, is_folder = stat.S_ISREG, stat.S_ISDIR
    snapshot = result.snapshot
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
        names: list[str] = []
        sizes, mtimes = array("q"), array("q")
        add_name, add_size, add_mtime = names.append, sizes.append, mtimes.append  # this loop runs once per file
        below: list[tuple[str, str]] = []
        with iterator:
            for entry in iterator:  # one entry at a time: a share's top folder may hold hundreds of thousands
                if at_top:
                    result.root_entries += 1
                name = entry.name
                if name[0] == ".":
                    continue
                try:
                    info = entry.stat(follow_symlinks=follow)  # the one stat; the mode tells a folder from a file
                except OSError:
                    continue  # vanished between listing and stat, or a dangling link
                mode = info.st_mode
                if is_folder(mode):
                    if not recursive:
                        continue
                    if not storable(name):
                        result.unnamed.append(shown(prefix + name + "/"))
                        continue
                    if follow:
                        identity = (info.st_dev, info.st_ino)
                        if identity in visited:
                            continue  # a link back into a folder we already walk: a loop, or a second way in
                        visited.add(identity)
                    below.append((prefix + name + "/", entry.path))
                    continue
                if not is_regular(mode):
                    continue
                size = info.st_size
                if not min_size <= size <= max_size:
                    continue
                lowered = name.lower()  # the never-media rules, inline: this line runs once per file of the tree
                if lowered.endswith(_NEVER_SUFFIXES) or lowered in _LITTER or _CORRUPT_SIDECAR in lowered:
                    continue
                if not (plain or accept.name_ok(prefix + name, name)):
                    continue
                if name.isascii() or storable(name):
                    add_name(name)
                    add_size(size)
                    add_mtime(info.st_mtime_ns)
                else:  # one such name must not stop the folder: skipped, and said so
                    result.unnamed.append(shown(prefix + name))
        listing = snapshot.add(prefix, names, sizes, mtimes)
        if each_folder is not None:
            each_folder(prefix, listing)
        below.sort(reverse=True)  # taken in path order: a first scan's rows reach the ledger's indexes in order
        pending.extend(below)
    return result


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
    inserted, new = _record(ledger, folder, sightings, now)
    _log_discovered(folder_key(folder), inserted)
    if len(inserted) > _LOGGED_ONE_BY_ONE:
        log.info("discovered_many", folder=folder_key(folder), files=len(inserted),
                 note=f"only the first {_LOGGED_ONE_BY_ONE} are logged one by one")
    return new


def _record(ledger: Ledger, folder: FolderConfig, sightings: Iterable[Sighting], now: float,
            skipped: Collection[str] = frozenset()) -> tuple[list[tuple[str, str]], list[str]]:
    """``([(relpath, asset_id)] inserted in one go, [paths with a new version])``; those in ``skipped`` are recorded
    ``skipped`` and in neither list."""
    batch = list(sightings)
    if not batch:
        return [], []
    inserted, leftover = ledger.observe_new_paths(folder_key(folder), batch, now, skipped=skipped)
    new = [relpath for relpath, _ in inserted]
    for sighting in leftover:
        if record_sighting(ledger, folder, Sighting(*sighting), now).outcome in ("new", "revived"):
            new.append(sighting[0])
    return inserted, new


def _log_discovered(key: str, inserted: list[tuple[str, str]], limit: int = _LOGGED_ONE_BY_ONE) -> None:
    for relpath, asset_id in inserted[:limit]:
        log.info("discovered", folder=key, path=relpath, asset_id=asset_id, outcome="new")


class _Recording:
    """What applying one scan writes, in transactions of :data:`CHUNK` files, and what it says when done.

    ``now`` gives the time each transaction records. With ``flush_after`` set, what waits is also written once that
    many seconds have passed since the last write, and ``on_new`` is told of each write that recorded a new version.
    """

    def __init__(self, ledger: Ledger, folder: FolderConfig, now: Callable[[], float], blind: tuple[str, ...] = (), *,
                 flush_after: float | None = None, on_new: Callable[[], None] | None = None) -> None:
        self.ledger, self.folder, self.now, self.blind = ledger, folder, now, blind
        self.flush_after, self.on_new = flush_after, on_new
        self.flushed_at = float("-inf")
        self.sightings: list[Sighting] = []
        self.skip: set[str] = set()
        self.missing: list[str] = []
        self.new: list[str] = []
        self.inserted = self.skipped = self.gone = 0

    def add(self, sightings: list[Sighting], skip: Collection[str] = ()) -> None:
        if not sightings:
            return
        self.sightings.extend(sightings)
        self.skip.update(skip)
        if len(self.sightings) >= CHUNK or (
                self.flush_after is not None and time.monotonic() - self.flushed_at >= self.flush_after):
            self.flush()

    def vanished(self, relpaths: Iterable[str]) -> None:
        """Paths that were there and are not now: checked one by one and marked when flushed."""
        self.missing.extend(relpath for relpath in relpaths if not relpath.startswith(self.blind))
        if len(self.missing) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        self.flushed_at = time.monotonic()
        if self.sightings:
            new_before = len(self.new)
            inserted, new = _record(self.ledger, self.folder, self.sightings, self.now(), self.skip)
            _log_discovered(folder_key(self.folder), inserted, max(0, _LOGGED_ONE_BY_ONE - self.inserted))
            self.inserted += len(inserted)
            self.new.extend(new)
            self.skipped += len(self.skip)
            self.sightings, self.skip = [], set()
            if self.on_new is not None and len(self.new) > new_before:
                self.on_new()
        if self.missing:
            self.gone += mark_vanished(self.ledger, self.folder, self.missing, self.now())
            self.missing = []

    def finish(self) -> tuple[list[str], int]:
        self.flush()
        key = folder_key(self.folder)
        if self.inserted > _LOGGED_ONE_BY_ONE:
            log.info("discovered_many", folder=key, files=self.inserted,
                     note=f"only the first {_LOGGED_ONE_BY_ONE} are logged one by one")
        if self.skipped:
            log.info("existing_skipped", folder=key, files=self.skipped, rule=_rule_text(self.folder.existing),
                     note="present when the folder was first watched; a later change to one is processed")
        return self.new, self.gone


class Poll:
    """One poll, compared with the scan before it folder by folder while the walk goes on
    (``scan_tree(folder, each_folder=poll.listed)``), then :meth:`finish`.

    A new or changed file is recorded as soon as its folder is listed (written at most once a second, and in
    transactions of :data:`CHUNK`), so it is in the ledger within one poll cycle wherever it sits in the tree, not a
    cycle plus a whole walk. What vanished is marked only in :meth:`finish`, which the caller reaches only once it has
    checked that the share did not drop during the walk: a folder missed because of that is not gone.
    """

    FLUSH_AFTER_SECONDS = 1.0

    def __init__(self, ledger: Ledger, folder: FolderConfig, previous: Snapshot, now: Callable[[], float],
                 on_new: Callable[[], None] | None = None) -> None:
        self.previous = previous
        self._recording = _Recording(ledger, folder, now, flush_after=self.FLUSH_AFTER_SECONDS, on_new=on_new)
        self._missing: list[str] = []

    def listed(self, prefix: str, listing: Listing) -> None:
        changed, missing = folder_changes(prefix, self.previous.listings.get(prefix), listing)
        self._recording.add(changed)
        self._missing.extend(missing)

    def finish(self, current: Snapshot, unreadable: Iterable[str] = ()) -> tuple[list[str], int]:
        """Returns (paths with a new version, versions marked gone); files below ``unreadable`` are not gone."""
        self._recording.blind = tuple(prefix + "/" for prefix in unreadable)
        self._recording.vanished(self._missing)
        self._recording.vanished(unlisted(self.previous, current))
        return self._recording.finish()


def latest_in_order(ledger: Ledger, key: str, after: str = "") -> Iterator[Known]:
    """Each path's newest version in the ledger, in path order, read a page at a time (each page its own query, so
    the caller may write between pages)."""
    while True:
        rows = ledger.latest_versions_page(key, after, CHUNK)
        yield from rows
        if len(rows) < CHUNK:
            return
        after = rows[-1][0]


def latest_under(ledger: Ledger, key: str, prefix: str) -> Iterator[Known]:
    """The newest versions of the paths below one sub-folder (``prefix`` ends with a slash)."""
    for row in latest_in_order(ledger, key, after=prefix):
        if not row[0].startswith(prefix):
            return
        yield row


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
    unreadable: Iterable[str] = (),
) -> tuple[list[str], int]:
    """Bring the ledger in line with one scan, reconciled with the ledger itself, read in path order a page at a time
    (while polling, :class:`Poll` compares with the last scan instead). Returns (paths with a new version, versions
    marked gone). Files below an ``unreadable`` sub-folder are unknown, not gone. On the folder's first scan its
    ``existing`` rule decides which of the files present are recorded ``skipped``.
    """
    key = folder_key(folder)
    recording = _Recording(ledger, folder, lambda: now, tuple(prefix + "/" for prefix in unreadable))
    first_scan = ledger.folder_first_seen(key) is None
    for changed, unseen, missing in _against_ledger(ledger, folder, current, now):
        recording.add(changed)
        recording.add(unseen, existing_to_skip(folder, unseen, now) if first_scan else ())
        recording.vanished(missing)
    new_and_gone = recording.finish()
    if first_scan:  # after its files are recorded: a scan cut short by a kill is a first scan again
        ledger.mark_folder_seen(key, now)
    return new_and_gone


def _against_ledger(ledger: Ledger, folder: FolderConfig, current: Snapshot,
                    now: float) -> Iterator[tuple[list[Sighting], list[Sighting], list[str]]]:
    """For each folder, on disk or in the ledger: (files whose newest ledger version differs, or ended ``gone`` and
    are back; files the ledger never saw; paths not yet handed to DeepVA that are no longer there)."""
    listings = current.listings
    compared: set[str] = set()
    for prefix, known in by_folder(latest_in_order(ledger, folder_key(folder))):
        compared.add(prefix)
        listing = listings.get(prefix)
        changed: list[Sighting] = []
        unseen: list[Sighting] = []
        if listing is not None:
            for name, size, mtime_ns in listing.entries():
                row = known.get(name)
                if row is None:
                    unseen.append(Sighting(prefix + name, size, mtime_ns))
                elif row[1] != size or row[2] != mtime_ns or row[3] == states.State.GONE:
                    sighting = Sighting(prefix + name, size, mtime_ns)
                    if not _reidentified(ledger, folder, row, sighting, now):
                        changed.append(sighting)
        present = listing.name_set() if listing is not None else set()
        missing = [prefix + name for name, row in known.items() if row[3] in states.UNSUBMITTED and name not in present]
        if changed or unseen or missing:
            yield changed, unseen, missing
    for prefix, listing in listings.items():
        if prefix not in compared:
            yield [], [Sighting(prefix + name, size, mtime_ns) for name, size, mtime_ns in listing.entries()], []


def existing_to_skip(folder: FolderConfig, present: Iterable[Sighting], first_seen: float) -> set[str]:
    """Of the files present at a folder's first scan, those its ``existing`` rule skips."""
    rule = folder.existing
    if rule == "process":
        return set()
    if rule == "skip":
        return {sighting.relpath for sighting in present}
    cutoff_ns = newer_than_cutoff(rule.newer_than, first_seen=first_seen) * 1e9
    return {sighting.relpath for sighting in present if sighting.mtime_ns <= cutoff_ns}


def _rule_text(rule: str | NewerThan) -> str:
    return rule if isinstance(rule, str) else f"newer_than {rule.newer_than}"


def _reidentified(ledger: Ledger, folder: FolderConfig, known: Known, sighting: Sighting, now: float) -> bool:
    """``known``: the path's newest version in the ledger, ``(relpath, size, mtime_ns, state)``."""
    if known[1] != sighting.size or known[3] in states.UNSUBMITTED or known[3] == states.State.GONE:
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
    _, gone = apply_scan(ledger, folder, result.snapshot, now, unreadable=result.unreadable)
    return len(result.snapshot), gone
