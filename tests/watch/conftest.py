"""A FolderWatch on a real temporary folder with a real ledger and real watchdog observers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from deepva_watch.config import FolderConfig, parse_config
from deepva_watch.flow import SystemClock
from deepva_watch.ledger import SqliteLedger
from deepva_watch.watch.supervisor import FolderWatch


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.root = tmp_path / "watch"
        self.root.mkdir()
        self.ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
        self.watches: list[FolderWatch] = []
        self.sightings = 0

    def folder(self, **overrides: Any) -> FolderConfig:
        data = {"path": str(self.root), "modules": {"face_recognition": {}}, "settle_seconds": 0,
                "poll_interval_seconds": 0.2, **overrides}
        return parse_config({"ledger": str(self.tmp_path / "ledger.sqlite3"), "folders": [data]}).folders[0]

    def start(self, folder: FolderConfig | None = None, **kwargs: Any) -> FolderWatch:
        watch = FolderWatch(folder or self.folder(), self.ledger, SystemClock(), self._saw, **kwargs)
        watch.start()
        self.watches.append(watch)
        assert watch.scanned.wait(10), "the first scan did not finish"
        return watch

    def _saw(self) -> None:
        self.sightings += 1

    def rows(self) -> dict[str, list[str]]:
        """relpath -> states of its versions, oldest first."""
        found: dict[str, list[str]] = {}
        for asset in sorted(self.ledger.query(folder=str(self.root.absolute()), limit=100_000), key=lambda a: a.id):
            found.setdefault(asset.relpath, []).append(asset.state)
        return found

    def stop(self) -> None:
        for watch in self.watches:
            watch.stop()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    h.stop()


def eventually(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    from tests.conftest import wait_for

    return wait_for(predicate, timeout, what)
