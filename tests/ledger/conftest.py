"""Every ledger implementation runs the same contract tests (as rclone runs one suite against every backend).

PostgreSQL runs for real: the session's one throwaway server (``benchmarks/pgcluster.py``, its fixtures registered in
the root conftest so the ledger, cluster and nodes tests share it), and a fresh empty database for each test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deepva_watch.ledger import Ledger, SqliteLedger
from tests.postgres_fixtures import PASSWORD, PASSWORD_ROLE, PostgresServer

__all__ = ["PASSWORD", "PASSWORD_ROLE", "MakeLedger", "PostgresServer"]

MakeLedger = Callable[[], Ledger]


@pytest.fixture(params=["sqlite", "postgres"])
def make_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeLedger]:
    """A factory of connections to one fresh ledger: each call is another handle (another node, another thread)."""
    opened: list[Ledger] = []
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")  # skips or fails first where PostgreSQL is missing
        from deepva_watch.ledger.postgres import PostgresLedger

        def connect() -> Ledger:
            return PostgresLedger(url)
    else:
        def connect() -> Ledger:
            return SqliteLedger(tmp_path / "ledger.sqlite3")

    def make() -> Ledger:
        ledger = connect()
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


@pytest.fixture
def ledger(make_ledger: MakeLedger) -> Ledger:
    return make_ledger()
