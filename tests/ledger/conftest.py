"""Every ledger implementation runs the same contract tests (as rclone runs one suite against every backend)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deepva_watch.ledger import Ledger, SqliteLedger

MakeLedger = Callable[[], Ledger]


@pytest.fixture(params=["sqlite"])
def make_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeLedger]:
    """A factory of connections to one fresh ledger: each call is another handle (another node, another thread)."""
    opened: list[Ledger] = []

    def make() -> Ledger:
        ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


@pytest.fixture
def ledger(make_ledger: MakeLedger) -> Ledger:
    return make_ledger()
