"""FolderWatch: everything about noticing files in one folder, behind the few calls the daemon makes.

The daemon neither knows nor cares whether a folder is watched with inotify or by polling, or whether it is paused
because its share dropped: it calls :meth:`FolderWatch.start`, then :meth:`FolderWatch.tick` from its main loop, and
:meth:`FolderWatch.stop`. All slow work (walking the tree, statting, ledger writes, even looking at the root, which
blocks for minutes on a hung NFS mount) happens on the folder's own worker thread; ``tick`` only wakes it.

What the worker does, each time it wakes (on an event, a request, or at least every second):

1. **Is the folder trustworthy?** The root must exist, be a readable folder, carry its anchor file if one is
   configured, and not have turned empty while the ledger knows many files there. If not, the folder is *paused*
   with a loud log line: no event or scan result is applied, so nothing is marked gone and nothing is submitted
   again. When it is back, the folder resumes with a full reconcile against the ledger (which identifies files by
   path, size and mtime, and by sampled content hash when a remount shifted mtimes). A root that is back as a
   different directory (a remount) gets fresh inotify watches.
2. **Events** (inotify, local disks): the hints queued by watchdog's thread are statted and recorded in batches.
   An overflow of the kernel queue, or a folder moved in, asks for a scan. A slow periodic rescan
   (``rescan_interval_seconds``) reconciles with the ledger anyway: events are only hints, and the reconcile is their
   witness. When it finds files that no event announced, events have gone deaf (a watch limit, a file system that
   hides changes, a library that stopped delivering): that is logged as an error, counted, shown in health, and the
   folder is polled until the next start. A tree too big for the inotify watch limit is polled from the start, with
   a warning naming the sysctl to raise.
3. **Polling** (SMB, NFS, FUSE): every ``poll_interval_seconds`` a scan is compared with the previous one in memory;
   every ``rescan_interval_seconds`` with the ledger itself. The last scan is kept in its compact form
   (:mod:`.snapshot`), so that a share of a million files costs tens of megabytes between polls, not gigabytes.
"""

from __future__ import annotations

import contextvars
import errno
import os
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import structlog

from deepva_watch.config import FolderConfig
from deepva_watch.ledger import Ledger
from deepva_watch.flow import Clock, folder_key
from deepva_watch.states import UNSUBMITTED, State
from deepva_watch.watch.discover import (
    Poll,
    Sighting,
    Snapshot,
    apply_scan,
    latest_in_order,
    latest_under,
    mark_vanished,
    never_recorded,
    record_sightings,
    relative,
    root_problem,
    scan_tree,
    sighting_for,
)
from deepva_watch.watch.events import EVENT_FILTER, HintQueue
from deepva_watch.watch.limits import MAX_USER_WATCHES, WATCH_LIMIT_SYSCTL, watch_budget
from deepva_watch.watch.mounts import MOUNTINFO, ModeChoice, choose_mode
from deepva_watch.watch.observer import ObserverFactory, RunningObserver, start_observer

log = structlog.get_logger("deepva_watch.watch")

#: The worker looks at the root at least this often, so a dropped share is noticed (and a returned one resumed) fast.
HEALTH_CHECK_SECONDS = 1.0
#: A root that lists as completely empty while the ledger knows at least this many files in it is taken for a share
#: that dropped (the empty mount point shows through), not for an operator who deleted everything.
EMPTY_GUARD_FILES = 10
#: A file that appeared at least this long before a periodic reconcile began should have been announced by an event.
MISSED_EVENT_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class FolderStatus:
    """What operators (status, metrics, health) may want to know about a folder's watch."""

    folder: str
    mode: str  # "events", "poll", or "starting" before the worker decided
    paused: bool
    reason: str  # why paused; empty when not
    last_scan_at: float | None
    files_seen: int
    why_mode: str = ""
    fstype: str | None = None
    overflows: int = 0
    scans: int = 0
    events_missed: int = 0
    """Files the periodic reconcile found that no event had announced."""
    warning: str = ""
    """Why the folder is degraded although it works (events went deaf and it is polled instead); empty when not."""
    names_skipped: int = 0
    """Files (and folders) the last scan skipped because their names are not UTF-8."""


class FolderWatch:
    def __init__(
        self,
        folder: FolderConfig,
        ledger: Ledger,
        clock: Clock,
        on_sighting: Callable[[], None],
        *,
        mountinfo: Path = MOUNTINFO,
        observer_factory: ObserverFactory = start_observer,
        watch_limit_file: Path = MAX_USER_WATCHES,
    ) -> None:
        self.folder = folder
        self.ledger = ledger
        self.clock = clock
        self.on_sighting = on_sighting
        self.key = folder_key(folder)
        self.root = folder.path.absolute()
        self._mountinfo = mountinfo
        self._observer_factory = observer_factory
        self._watch_limit_file = watch_limit_file
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._hints = HintQueue(self._wake, ignore=never_recorded, on_lost=self._on_overflow)
        self._observer: RunningObserver | None = None
        self._thread: threading.Thread | None = None
        self._choice: ModeChoice | None = None
        self._mode = "starting"
        self._paused_reason: str | None = None
        self._identity: tuple[int, int] | None = None
        self._snapshot: Snapshot | None = None  # the last scan, kept while polling
        self._rescan_reasons: set[str] = set()
        self._reasons_lock = threading.Lock()
        self._folders_in: set[str] = set()
        self._next_scan = 0.0
        self._next_reconcile = float("inf")  # the first scan is asked for by start()
        self._last_scan_at: float | None = None
        self._files_seen = 0
        self._overflows = 0
        self._scans = 0
        self._events_missed = 0
        self._warning = ""
        self._unnamed: set[str] = set()
        self.scanned = threading.Event()  # set after the first completed scan; tests and benchmarks wait on it

    # -- what the daemon calls ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Returns at once; the worker chooses the mode, sets up watches and runs the first scan."""
        self._request_scan("start")
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run,), name=f"watch:{self.root.name}", daemon=True)
        self._thread.start()

    def tick(self) -> None:
        """Called every half second by the daemon's main loop: only wakes the worker, and notices if it died."""
        if self._thread is not None and not self._thread.is_alive() and not self._stopping.is_set():
            log.error("watch_worker_died", folder=self.key, note="restarting it")
            self.start()
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._stop_observer()

    def status(self) -> FolderStatus:
        choice = self._choice
        return FolderStatus(
            folder=self.key,
            mode=self._mode,
            paused=self._paused_reason is not None,
            reason=self._paused_reason or "",
            last_scan_at=self._last_scan_at,
            files_seen=self._files_seen,
            why_mode=choice.reason if choice else "",
            fstype=choice.fstype if choice else None,
            overflows=self._overflows,
            scans=self._scans,
            events_missed=self._events_missed,
            warning=self._warning,
            names_skipped=len(self._unnamed),
        )

    # -- requests from other threads ------------------------------------------------------------------------------

    def request_rescan(self, reason: str = "requested") -> None:
        self._request_scan(reason)

    def _request_scan(self, reason: str) -> None:
        with self._reasons_lock:
            self._rescan_reasons.add(reason)
        self._wake.set()

    def _on_overflow(self) -> None:  # watchdog's thread
        self._overflows += 1
        self._request_scan("event queue overflow")

    # -- the worker ------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        bound = structlog.contextvars.bound_contextvars(folder=self.key)
        with bound:
            self._choose_mode()
            while not self._stopping.is_set():
                try:
                    self._step()
                except Exception as error:  # the worker must outlive any one bad scan; the next one tries again
                    log.error("watch_step_failed", error=repr(error)[:300], trace=traceback.format_exc(limit=6))
                    self._stopping.wait(HEALTH_CHECK_SECONDS)
                self._wake.wait(self._idle_seconds())
                self._wake.clear()
            self._stop_observer()

    def _choose_mode(self) -> None:
        self._choice = choose_mode(self.folder.watch, self.root, self._mountinfo)
        self._mode = self._choice.mode
        log.info("watching", mode=self._mode, why=self._choice.reason, fstype=self._choice.fstype,
                 recursive=self.folder.recursive, modules=sorted(self.folder.modules),
                 settle_seconds=self.folder.settle_seconds,
                 poll_interval_seconds=self.folder.poll_interval_seconds if self._mode == "poll" else None,
                 rescan_interval_seconds=self.folder.rescan_interval_seconds)

    def _idle_seconds(self) -> float:
        if self._paused_reason is not None:  # a scan falls due meanwhile, but none runs until the folder is back
            return HEALTH_CHECK_SECONDS
        until_scan = (self._next_scan if self._mode == "poll" else self._next_reconcile) - time.monotonic()
        return max(0.0, min(HEALTH_CHECK_SECONDS, until_scan))

    def _step(self) -> None:
        if not self._healthy():
            return
        if self._mode == "events":
            if self._observer is None:
                self._start_observer()
            self._apply_hints()  # first: a reconcile must only find what no event announced
        now_mono = time.monotonic()
        with self._reasons_lock:
            reasons, self._rescan_reasons = self._rescan_reasons, set()
        if now_mono >= self._next_reconcile:
            reasons.add("periodic reconcile")
        if reasons:
            self._folders_in.clear()
            self._scan(reconcile=True, why=", ".join(sorted(reasons)), witness=reasons == {"periodic reconcile"})
        elif self._mode == "poll" and now_mono >= self._next_scan:
            self._scan(reconcile=False, why="poll")

    # -- health and pausing ----------------------------------------------------------------------------------------

    def _healthy(self) -> bool:
        problem = root_problem(self.folder)
        if problem is None:
            try:
                info = os.stat(self.root)
                identity = (info.st_dev, info.st_ino)
            except OSError as error:
                problem, identity = f"the folder is not reachable ({error.strerror})", None
            if identity is not None and self._identity is not None and identity != self._identity:
                log.warning("folder_replaced", note="the folder is back as a different directory (remounted?); "
                            "watching it afresh and reconciling with the ledger")
                self._stop_observer()
                self._request_scan("folder remounted")
            if identity is not None:
                self._identity = identity
        if problem is None and self._paused_reason is not None:
            problem = self._still_down(self._paused_reason)
        if problem is not None:
            self._pause(problem)
            return False
        if self._paused_reason is not None:
            self._resume()
        return True

    def _still_down(self, paused_for: str) -> str | None:
        """A paused folder also has to list again (and to hold something, if emptiness paused it) before it resumes."""
        try:
            with os.scandir(self.root) as entries:
                first = next(entries, None)
        except OSError as error:
            return f"the folder cannot be listed ({error.strerror or repr(error)})"
        if first is None and paused_for.startswith("suddenly empty"):
            return paused_for
        return None

    def _pause(self, reason: str) -> None:
        if self._paused_reason is not None and self._paused_reason != reason:
            log.warning("folder_still_paused", reason=reason)
        if self._paused_reason is None:
            log.error("folder_paused", reason=reason,
                      note="no file in this folder is marked gone or submitted again while it is paused; "
                           "it resumes by itself when the folder is back")
        self._paused_reason = reason
        self._hints.enabled = False
        self._hints.clear()
        self._stop_observer()  # its watches may sit on a directory that is no longer ours
        self._snapshot = None

    def _resume(self) -> None:
        log.warning("folder_resumed", after=self._paused_reason, note="reconciling with the ledger")
        self._paused_reason = None
        self._hints.enabled = True
        self._request_scan("folder back")

    # -- events ----------------------------------------------------------------------------------------------------

    def _start_observer(self) -> None:
        budget = watch_budget(self.root, recursive=self.folder.recursive, follow_symlinks=self.folder.follow_symlinks,
                              limit_file=self._watch_limit_file)
        if budget is not None and not budget.fits:
            self._fall_back_to_polling(budget.describe())
            return
        self._hints.enabled = True
        try:
            self._observer = self._observer_factory(
                str(self.root), self._hints, recursive=self.folder.recursive,
                follow_symlinks=self.folder.follow_symlinks, event_filter=EVENT_FILTER,
            )
        except OSError as error:
            if error.errno == errno.ENOSPC:
                self._fall_back_to_polling("the watch limit was reached watching the folder itself")
                return
            log.warning("events_unavailable", error=error.strerror or repr(error), note="polling this folder instead")
            self._mode = "poll"
            return
        self._request_scan("watches up")  # anything written before the watches were in place

    def _fall_back_to_polling(self, detail: str) -> None:
        log.warning("inotify_watch_limit", detail=detail,
                    note=f"the tree does not fit in the inotify watch limit; polling this folder instead. Raise it "
                         f"with 'sysctl -w {WATCH_LIMIT_SYSCTL}=524288' (and in /etc/sysctl.d/) to use events again")
        self._switch_to_polling("switched to polling")

    def _switch_to_polling(self, why: str) -> None:
        self._stop_observer()
        self._hints.clear()
        self._mode = "poll"
        self._next_scan = 0.0
        self._request_scan(why)

    def _events_went_deaf(self, missed: list[str]) -> None:
        """The reconcile found files that no event announced: say so loudly and poll from now on."""
        self._events_missed += len(missed)
        self._warning = (f"events stopped arriving: the periodic reconcile found {len(missed)} file(s) that no event "
                         f"announced; the folder is polled until the next start")
        log.error("events_missed", files=len(missed), examples=missed[:5],
                  note="file-system events did not report these files; polling this folder until the next start. "
                       "Check 'deepva-watch doctor' for the folder's events probe, or set watch: poll")
        self._switch_to_polling("events went deaf")

    def _stop_observer(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            try:
                observer.stop()
                observer.join(timeout=5)
            except Exception as error:  # a dead share can make inotify_rm_watch fail; the watches die with the fd
                log.debug("observer_stop_failed", error=repr(error)[:200])

    def _apply_hints(self) -> None:
        hints = self._hints.drain()
        if not hints:
            return
        seen: dict[str, None] = {}
        left: dict[str, None] = {}
        folders_out: list[str] = []
        for hint in hints:
            if hint.kind == "seen":
                seen[hint.path] = None
                left.pop(hint.path, None)
            elif hint.kind == "left":
                left[hint.path] = None
            elif hint.kind == "folder_in":
                self._folders_in.add(hint.path)
            else:
                folders_out.append(hint.path)
        now = self.clock.now()
        sightings: dict[str, Sighting] = {}
        for path in seen:
            sighting = sighting_for(self.folder, Path(path))
            if sighting is not None:
                sightings[sighting.relpath] = sighting
        for path in list(self._folders_in):
            relpath = relative(self.root, Path(path))
            self._folders_in.discard(path)
            if relpath and relpath != ".":
                for relpath_in, (size, mtime_ns) in scan_tree(self.folder, under=relpath).snapshot.items():
                    sightings[relpath_in] = Sighting(relpath_in, size, mtime_ns)
        gone_paths = [relpath for path in left if (relpath := relative(self.root, Path(path))) and relpath not in sightings]
        for path in folders_out:
            prefix = relative(self.root, Path(path))
            if prefix:
                gone_paths.extend(relpath for relpath, _, _, state in latest_under(self.ledger, self.key, prefix + "/")
                                  if state in UNSUBMITTED)
        if root_problem(self.folder) is not None:
            return  # the share dropped while we were looking: these hints prove nothing
        new = record_sightings(self.ledger, self.folder, sightings.values(), now)
        if gone_paths:
            mark_vanished(self.ledger, self.folder, gone_paths, now)
        if sightings:
            self.on_sighting()
        if new:
            log.debug("events_applied", hints=len(hints), new=len(new))

    # -- scans -----------------------------------------------------------------------------------------------------

    def _scan(self, *, reconcile: bool, why: str, witness: bool = False) -> None:
        """``witness``: a periodic reconcile in event mode, whose new files events should have announced."""
        started = time.monotonic()
        started_at = time.time()
        cpu_started = time.thread_time()
        previous = None if reconcile else self._snapshot
        poll = None if previous is None else Poll(self.ledger, self.folder, previous, self.clock.now, self.on_sighting)
        result = scan_tree(self.folder, each_folder=poll.listed if poll is not None else None)
        if result.root_error is not None:
            self._pause(f"the folder cannot be listed ({result.root_error})")
            return
        if result.root_entries == 0:
            known = len(previous) if previous is not None else self._known_live_files()
            if known >= EMPTY_GUARD_FILES:
                self._pause(f"suddenly empty while {known} files are known to be there")
                return
        problem = root_problem(self.folder)
        if problem is not None:  # the share dropped during the walk: what the walk missed is not gone
            self._pause(problem)
            return
        if previous is not None and result.unreadable:  # what could not be listed is taken as it was
            result.snapshot.keep_from(previous, tuple(prefix + "/" for prefix in result.unreadable))
        self._report_unnamed(result.unnamed)
        now = self.clock.now()
        if poll is not None:
            new, gone = poll.finish(result.snapshot, result.unreadable)
        else:
            new, gone = apply_scan(self.ledger, self.folder, result.snapshot, now, unreadable=result.unreadable)
        self._snapshot = result.snapshot if self._mode == "poll" else None
        mono = time.monotonic()
        level = log.info if reconcile or new or gone else log.debug
        level("scanned", why=why, mode=self._mode, files=len(result.snapshot), folders=result.folders, new=len(new),
              gone=gone, unreadable=result.unreadable[:5] or None, ms=round((mono - started) * 1000),
              cpu_ms=round((time.thread_time() - cpu_started) * 1000))
        if witness and self._mode == "events" and new:
            missed = self._unannounced(new, started_at - MISSED_EVENT_GRACE_SECONDS)
            if missed:
                self._events_went_deaf(missed)
        # counted after the log line, so whoever waits for the count also finds the line
        self._files_seen, self._last_scan_at, self._scans = len(result.snapshot), now, self._scans + 1
        self._next_scan = mono + self.folder.poll_interval_seconds
        if reconcile:
            self._next_reconcile = mono + self.folder.rescan_interval_seconds
        self.scanned.set()
        if new:
            self.on_sighting()

    def _report_unnamed(self, unnamed: list[str]) -> None:
        """Each name the ledger cannot keep is logged once, as long as it stays; the rest of the folder goes on."""
        for name in sorted(set(unnamed) - self._unnamed):
            log.warning("name_not_utf8", folder=self.key, path=name,
                        note="skipped: rename it with valid UTF-8 (convmv -f latin1 -t utf8) to have it processed")
        self._unnamed = set(unnamed)

    def _unannounced(self, relpaths: list[str], before: float) -> list[str]:
        """Of the new paths, those that were in place (by their change time) well before the reconcile began."""
        missed = []
        for relpath in relpaths:
            try:
                changed_at = os.stat(self.root / relpath, follow_symlinks=self.folder.follow_symlinks).st_ctime
            except OSError:
                continue
            if changed_at < before:
                missed.append(relpath)
        return missed

    def _known_live_files(self) -> int:
        return sum(1 for _, _, _, state in latest_in_order(self.ledger, self.key) if state not in _NOT_THERE)


_NOT_THERE = frozenset({State.GONE, State.SUPERSEDED})
