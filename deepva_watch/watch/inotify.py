"""A watchdog inotify observer that tells us what watchdog only logs: queue overflows and the watch limit.

watchdog 7 reacts to ``IN_Q_OVERFLOW`` by re-adding its watches and logging a warning, but it never tells the event
handler, so the files whose events were dropped are simply never seen (watchdog #878). And when ``inotify_add_watch``
fails with ``ENOSPC`` (``fs.inotify.max_user_watches`` reached) below the root, watchdog skips that sub-folder
silently. Both matter to us: an overflow must trigger a rescan, and a tree we cannot fully watch must be polled. This
module subclasses watchdog's watch group and emitter to report both; everything else is watchdog's own code.

On platforms without inotify, :func:`make_observer` returns watchdog's default observer and reports nothing; the
periodic rescan is the safety net there.
"""

from __future__ import annotations

import errno
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver

WATCH_LIMIT_SYSCTL = "fs.inotify.max_user_watches"

# watchdog warns when a folder created during its own recursive walk is watched twice over; the second registration
# simply replaces the first, which is what we want.
warnings.filterwarnings("ignore", message="Callback with id .* already exists", category=RuntimeWarning)


@dataclass
class WatchReport:
    """What the watch group and its owner tell each other. Callbacks run on watchdog's threads: they must only set
    flags."""

    on_overflow: Callable[[], None]
    on_watch_limit: Callable[[str], None]
    ignore_name: Callable[[str], bool] = lambda name: False
    """File names whose events are dropped as soon as they are read (our own sidecars and temporary files): each
    event otherwise passes through three of watchdog's threads before the handler can drop it."""
    watches: int = 0
    limit_hits: int = 0


if sys.platform.startswith("linux"):
    from watchdog.observers.inotify import InotifyEmitter, InotifyWatchGroup
    from watchdog.observers.inotify_c import InotifyFD

    class _ReportingWatchGroup(InotifyWatchGroup):
        report: WatchReport | None = None  # set on the per-observer subclass made in _group_class()

        def _add_callback(self, path: bytes) -> None:
            # watchdog's own version swallows every error below the root; we must hear about ENOSPC
            try:
                wd = self._inotify_fd.add_callback(path, self.event_mask, self._callback, self._id)
            except OSError as error:
                if error.errno == errno.ENOSPC and self.report is not None:
                    self.report.limit_hits += 1
                    if self.report.limit_hits == 1:
                        self.report.on_watch_limit(os.fsdecode(path))
                if path == self.path:
                    raise
                return
            self._active_callbacks_by_path[path] = wd
            self._active_callbacks_by_watch[wd] = path
            if self.report is not None:
                self.report.watches = len(self._active_callbacks_by_path)

        def on_event(self, event: Any) -> None:
            # A dropped IN_MOVED_FROM leaves its IN_MOVED_TO unpaired, which watchdog reports as a creation: a copy
            # tool's rename from a hidden name into place is still seen.
            if self.report is not None and event.name and not event.is_directory \
                    and self.report.ignore_name(os.fsdecode(event.name)):
                return
            super().on_event(event)

        def on_queue_overflow(self) -> None:
            super().on_queue_overflow()
            if self.report is not None:
                self.report.on_overflow()

    class _ReportingEmitter(InotifyEmitter):
        def __init__(self, *args: Any, report: WatchReport, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._group_class = type("WatchGroup", (_ReportingWatchGroup,), {"report": report})

        def on_thread_start(self) -> None:
            self._inotify = self._group_class(
                self._inotify_fd,
                os.fsencode(self.watch.path),
                is_recursive=self.watch.is_recursive,
                event_mask=self.get_event_mask_from_filter(),
                follow_symlink=self.watch.follow_symlink,
            )

        def simulate_overflow(self) -> None:
            """What the kernel's IN_Q_OVERFLOW leads to; tests and the benchmarks use it."""
            if self._inotify is not None:
                self._inotify.on_queue_overflow()

    class ReportingObserver(BaseObserver):
        def __init__(self, report: WatchReport) -> None:
            self._inotify_fd = InotifyFD()
            self._inotify_fd.start()
            super().__init__(_ReportingEmitter, timeout=DEFAULT_OBSERVER_TIMEOUT, inotify_fd=self._inotify_fd,
                             report=report)

        def on_thread_stop(self) -> None:
            super().on_thread_stop()
            self._inotify_fd.stop()
            self._inotify_fd.join()

        def simulate_overflow(self) -> None:
            for emitter in list(self.emitters):
                emitter.simulate_overflow()  # type: ignore[attr-defined]

        def close_unstarted(self) -> None:
            """start() failed: the inotify reader thread still runs and must be ended."""
            self._inotify_fd.stop()
            self._inotify_fd.join()


def make_observer(report: WatchReport) -> BaseObserver:
    if sys.platform.startswith("linux"):
        return ReportingObserver(report)
    return Observer()


def start_observer(
    path: str,
    handler: FileSystemEventHandler,
    report: WatchReport,
    *,
    recursive: bool,
    follow_symlinks: bool,
    event_filter: list[type] | None,
) -> BaseObserver:
    """Schedule and start; raises OSError (ENOSPC included) if even the root cannot be watched."""
    observer = make_observer(report)
    observer.schedule(handler, path, recursive=recursive, event_filter=event_filter, follow_symlink=follow_symlinks)
    try:
        observer.start()
    except BaseException:
        if hasattr(observer, "close_unstarted"):
            observer.close_unstarted()
        raise
    return observer
