"""File-system events, reduced to the few that matter and handed over without doing any work on watchdog's thread.

watchdog reads the kernel's inotify queue and dispatches on its own threads. Anything slow there (a stat, a ledger
transaction) lets the kernel queue fill during a burst and overflow (watchdog #878). So the handler only appends the
event to a queue and wakes the folder's worker, which stats and records in batches.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable


from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    EventsLostEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

#: Only the events that can mean "a file arrived, was written for the last time, moved or left". Modify, open, access
#: and close-without-write are left out on purpose, and watchdog builds the inotify mask from this list: a large copy
#: raises thousands of modify events, and with watchdog's default mask merely listing ~4,500 folders (watchdog's own
#: start-up walk opens each) overflows the kernel queue. Our own reads (hashing, uploading) raise nothing either.
#: ``EventsLostEvent`` (a kernel queue overflow) reaches the handler only when the filter lists it.
EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileClosedEvent, FileMovedEvent, FileDeletedEvent, DirCreatedEvent, DirMovedEvent,
    EventsLostEvent,
]


@dataclass(frozen=True)
class Hint:
    """One event, as plain data: ``kind`` is ``seen`` (created, closed, moved in), ``left`` (deleted, moved out),
    ``folder_in`` (a folder appeared: its files raise no events of their own) or ``folder_out``."""

    kind: str
    path: str


class HintQueue(FileSystemEventHandler):
    """The watchdog handler: turns events into hints and wakes the worker. Never blocks, never raises."""

    def __init__(self, wake: threading.Event, ignore: Callable[[str], bool] = lambda name: False,
                 on_lost: Callable[[], None] = lambda: None) -> None:
        """``ignore(name)``: file names whose events cannot matter (our own sidecars and temporary files);
        ``on_lost()``: the kernel dropped events (its queue overflowed), so only a rescan can find what they said."""
        self._hints: deque[Hint] = deque()
        self._wake = wake
        self._ignore = ignore
        self._on_lost = on_lost
        self.enabled = True

    def on_events_lost(self, event: EventsLostEvent) -> None:
        if self.enabled:
            self._on_lost()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if not self.enabled:
            return
        kind = event.event_type
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        append = self._hints.append
        if event.is_directory:
            if kind == "created":
                append(Hint("folder_in", src))
            elif kind == "moved":
                append(Hint("folder_out", src))
                append(Hint("folder_in", dest))
            elif kind == "deleted":
                append(Hint("folder_out", src))
            else:
                return
        elif kind in ("created", "closed", "modified"):
            if not self._file_hint("seen", src):
                return
        elif kind == "moved":
            left = self._file_hint("left", src)
            if not self._file_hint("seen", dest) and not left:
                return
        elif kind == "deleted":
            if not self._file_hint("left", src):
                return
        else:
            return
        self._wake.set()

    def _file_hint(self, kind: str, path: str) -> bool:
        if not path or self._ignore(os.path.basename(path)):
            return False
        self._hints.append(Hint(kind, path))
        return True

    def drain(self, limit: int = 50_000) -> list[Hint]:
        hints = []
        pop = self._hints.popleft
        try:
            for _ in range(limit):
                hints.append(pop())
        except IndexError:
            pass
        return hints

    def clear(self) -> None:
        self._hints.clear()

    def __len__(self) -> int:
        return len(self._hints)


