"""Wiring: the ledger, one observer per folder, periodic rescans, and a runner thread (or several) per stage.

The main thread only waits: for a stop request, or for the next rescan. Signal handlers (in ``cli``) only call
:meth:`Daemon.request_stop`; the main loop does the stopping, so nothing heavy runs inside a signal handler.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
)
from watchdog.observers import Observer

from deepva_watch.config import Config, FolderConfig
from deepva_watch.ledger import Ledger
from deepva_watch.pipeline import Clock, Services, StageRunner, SystemClock, folder_key, run_in_thread
from deepva_watch.stages import STAGES
from deepva_watch.stages.discover import FolderEventHandler, reconcile, record_sighting, scan

log = structlog.get_logger("deepva_watch.daemon")

#: Only the events that can mean "a file arrived, changed for the last time, moved or left". Modify events are left out
#: on purpose: a large copy raises thousands, and the settle stage re-checks the file itself anyway.
EVENT_FILTER = [FileCreatedEvent, FileClosedEvent, FileMovedEvent, FileDeletedEvent, DirCreatedEvent, DirMovedEvent]

STOP_DEADLINE_SECONDS = 20.0


class _FolderHandler(FolderEventHandler):
    """Adds one thing to the event handler: a folder created or moved in is scanned, since its files raise no events."""

    def __init__(self, *args: Any, on_directory: Callable[[FolderConfig], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_directory = on_directory

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory and event.event_type in ("created", "moved"):
            self.on_directory(self.folder)
            return
        super().on_any_event(event)


@dataclass
class Daemon:
    config: Config
    client: Any
    clock: Clock = field(default_factory=SystemClock)
    stop_event: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.config.ledger)
        self.services = Services(config=self.config, ledger=self.ledger, client=self.client, clock=self.clock)
        self.runners: list[StageRunner] = []
        self.threads: list[threading.Thread] = []
        self.observer: Any = None
        self._rescan_requested: set[str] = set()
        self._rescan_lock = threading.Lock()
        self.ready = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        recovered = self.ledger.recover(self.clock.now())
        if recovered:
            log.info("recovered_in_flight", **recovered)
        for stage in STAGES:
            for index in range(max(1, stage.workers(self.config) if stage.working else 1)):
                runner = StageRunner(stage, self.services, self.stop_event, self._wake_stage_for)
                self.runners.append(runner)
                self.threads.append(run_in_thread(f"{stage.name}-{index}", runner.run_forever))
        self.observer = Observer()
        for folder in self.config.folders:
            handler = _FolderHandler(
                self.ledger, folder, self.clock.now, lambda: self._wake_stage_for("settling"),
                on_directory=self.request_rescan,
            )
            self.observer.schedule(handler, str(folder.path), recursive=folder.recursive, event_filter=EVENT_FILTER)
            log.info("watching", folder=folder_key(folder), recursive=folder.recursive,
                     modules=sorted(folder.modules), settle_seconds=folder.settle_seconds)
        self.observer.start()
        for folder in self.config.folders:  # after the observer, so nothing written during the scan is missed
            self._rescan(folder)
        self.ready.set()

    def run(self) -> None:
        self.start()
        next_rescan = time.monotonic() + self.config.rescan_interval_seconds
        try:
            while not self.stop_event.wait(0.5):
                with self._rescan_lock:
                    requested, self._rescan_requested = self._rescan_requested, set()
                for folder in self.config.folders:
                    if folder_key(folder) in requested:
                        self._rescan(folder)
                if time.monotonic() >= next_rescan:
                    for folder in self.config.folders:
                        self._rescan(folder)
                    next_rescan = time.monotonic() + self.config.rescan_interval_seconds
        finally:
            self.shutdown()

    def request_stop(self) -> None:
        self.stop_event.set()
        for runner in self.runners:
            runner.wakeup.set()

    def request_rescan(self, folder: FolderConfig) -> None:
        with self._rescan_lock:
            self._rescan_requested.add(folder_key(folder))

    def shutdown(self) -> None:
        """Stop taking work, let steps in flight finish within a deadline, then close the ledger.

        A step still running at the deadline (a long upload) is abandoned: its row stays in its working state and the
        next start returns it to the state before, so it is done again rather than lost.
        """
        self.request_stop()
        if self.observer is not None:
            self.observer.stop()
        deadline = time.monotonic() + STOP_DEADLINE_SECONDS
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        still_running = [thread.name for thread in self.threads if thread.is_alive()]
        if self.observer is not None:
            self.observer.join(timeout=5)
        log.info("stopped", abandoned_steps=still_running)

    # -- helpers -----------------------------------------------------------------------------------------------------

    def _rescan(self, folder: FolderConfig) -> None:
        started = time.monotonic()
        seen, gone = reconcile(self.ledger, folder, self.clock.now())
        log.info("scanned", folder=folder_key(folder), files=seen, gone=gone, ms=round((time.monotonic() - started) * 1000))
        self._wake_stage_for("settling")

    def _wake_stage_for(self, state: str) -> None:
        for runner in self.runners:
            if state in runner.stage.takes:
                runner.wakeup.set()


__all__ = ["Daemon", "record_sighting", "scan"]
