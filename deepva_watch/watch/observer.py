"""watchdog's observer, used through its public API only.

Two things matter beyond plain events: a kernel queue overflow (events lost for good) and the inotify watch limit (a
sub-folder that cannot be watched stays silent). watchdog reports the first as :class:`EventsLostEvent`, delivered to
the handler's ``on_events_lost``; the second is checked before the observer starts (:mod:`.limits`), and whatever
slips past both is caught by the periodic reconcile, which notices files that no event announced
(:class:`deepva_watch.watch.supervisor.FolderWatch`).
"""

from __future__ import annotations

import warnings
from typing import Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

# watchdog warns when a folder created during its own recursive walk is registered twice; the second registration
# simply replaces the first, which is what we want.
warnings.filterwarnings("ignore", message="Callback with id .* already exists", category=RuntimeWarning)


class RunningObserver(Protocol):
    """What a folder watch needs of a started observer."""

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...


class ObserverFactory(Protocol):
    def __call__(
        self,
        path: str,
        handler: FileSystemEventHandler,
        *,
        recursive: bool,
        follow_symlinks: bool,
        event_filter: list[type[FileSystemEvent]] | None,
    ) -> RunningObserver: ...


def start_observer(
    path: str,
    handler: FileSystemEventHandler,
    *,
    recursive: bool,
    follow_symlinks: bool,
    event_filter: list[type[FileSystemEvent]] | None,
) -> RunningObserver:
    """Schedule and start watchdog's default observer; raises OSError if even the root cannot be watched."""
    observer = Observer()
    try:
        observer.schedule(handler, path, recursive=recursive, event_filter=event_filter, follow_symlink=follow_symlinks)
        observer.start()
    except BaseException:
        observer.stop()
        raise
    return observer
