"""Prove that file-system events arrive on a folder's file system, instead of assuming it from the configuration.

A probe makes a hidden temporary folder inside the watched folder, watches it with the same observer the daemon
uses, creates and closes a file there, and waits for the create and the close-write events; then it removes the
folder. It is what ``doctor`` reports for every folder watched with events.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileClosedEvent, FileCreatedEvent, FileSystemEvent, FileSystemEventHandler

from deepva_watch.watch.observer import ObserverFactory, start_observer

PROBE_PREFIX = ".deepva-watch-probe-"
PROBE_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class EventProbe:
    created: bool
    closed: bool
    problem: str | None = None
    """Why no probe could be made (the folder is not writable); None when it ran."""

    @property
    def delivered(self) -> bool:
        return self.problem is None and self.created and self.closed


class _Seen(FileSystemEventHandler):
    def __init__(self, path: str) -> None:
        self.path = path
        self.created = threading.Event()
        self.closed = threading.Event()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if os.fsdecode(event.src_path) != self.path:
            return
        if isinstance(event, FileCreatedEvent):
            self.created.set()
        elif isinstance(event, FileClosedEvent):
            self.closed.set()


def probe_events(folder: Path, *, factory: ObserverFactory = start_observer,
                 timeout: float = PROBE_TIMEOUT_SECONDS) -> EventProbe:
    try:
        scratch = Path(tempfile.mkdtemp(prefix=PROBE_PREFIX, dir=folder))
    except OSError as error:
        return EventProbe(False, False, f"cannot create a probe folder in {folder}: {error.strerror}")
    try:
        target = scratch / "probe.jpg"
        seen = _Seen(str(target))
        try:
            observer = factory(str(scratch), seen, recursive=False, follow_symlinks=False,
                               event_filter=[FileCreatedEvent, FileClosedEvent])
        except OSError as error:
            return EventProbe(False, False, f"cannot watch {folder}: {error.strerror}")
        try:
            with open(target, "wb") as stream:
                stream.write(b"deepva-watch event probe")
            created = seen.created.wait(timeout)
            closed = seen.closed.wait(timeout if created else 0.1)
        finally:
            observer.stop()
            observer.join(5)
        return EventProbe(created, closed)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
