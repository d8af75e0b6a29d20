"""Uploads under way, as they move: bytes sent, rate and time left, for ``status``, the status page, the metrics and
the watchdog (a worker in a long upload is busy, not stuck, while its bytes keep going out)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("deepva_watch.upload")

#: An upload that lasts longer than this logs its progress at this interval.
PROGRESS_LOG_SECONDS = 30.0


@dataclass(frozen=True)
class TransferView:
    asset_id: str
    folder: str
    relpath: str
    sent: int
    total: int
    seconds: float
    """Since the upload started."""

    @property
    def rate(self) -> float:
        """Bytes per second so far."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        return (self.total - self.sent) / self.rate if self.rate > 0 else None


class Transfer:
    """One upload's progress; ``sent`` is called with the bytes of the file sent so far in this attempt."""

    def __init__(self, owner: Transfers, asset_id: str, folder: str, relpath: str, total: int) -> None:
        self._owner = owner
        self.asset_id, self.folder, self.relpath, self.total = asset_id, folder, relpath, total
        self.started = self.moved = time.monotonic()
        self.count = 0
        self._logged = self.started

    def sent(self, count: int) -> None:
        delta, self.count = count - self.count, count
        self.moved = time.monotonic()
        if delta > 0:
            self._owner.on_bytes(delta)
        if self.moved - self._logged >= PROGRESS_LOG_SECONDS:
            self._logged = self.moved
            view = self.view()
            log.info("upload_progress", folder=self.folder, path=self.relpath, asset_id=self.asset_id,
                     sent=view.sent, total=view.total, mb_per_s=round(view.rate / 1e6, 1),
                     eta_s=round(view.eta_seconds) if view.eta_seconds is not None else None)

    def view(self) -> TransferView:
        return TransferView(self.asset_id, self.folder, self.relpath, self.count, self.total,
                            time.monotonic() - self.started)

    def __enter__(self) -> Transfer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._owner.finished(self)


class Transfers:
    def __init__(self, on_bytes: Callable[[int], None] = lambda count: None) -> None:
        """``on_bytes(count)`` hears every chunk as it goes out (the metrics' byte counter)."""
        self.on_bytes = on_bytes
        self._running: dict[str, Transfer] = {}
        self._lock = threading.Lock()

    def start(self, asset_id: str, folder: str, relpath: str, total: int) -> Transfer:
        transfer = Transfer(self, asset_id, folder, relpath, total)
        with self._lock:
            self._running[asset_id] = transfer
        return transfer

    def finished(self, transfer: Transfer) -> None:
        with self._lock:
            if self._running.get(transfer.asset_id) is transfer:
                del self._running[transfer.asset_id]

    def running(self) -> list[TransferView]:
        with self._lock:
            transfers = list(self._running.values())
        return [transfer.view() for transfer in transfers]

    def moved_at(self, asset_id: str) -> float | None:
        """When bytes of this upload last went out (monotonic seconds), or None if it is not running."""
        with self._lock:
            transfer = self._running.get(asset_id)
        return transfer.moved if transfer is not None else None
