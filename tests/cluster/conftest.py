"""Several nodes on one PostgreSQL ledger, as operators see them: the session's throwaway PostgreSQL server (registered
in the root conftest; a test that needs it skips on a developer's machine without one, and fails in CI) and the
commands' CLI runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.nodes import Cluster
from tests.commands.conftest import cli  # noqa: F401
from tests.ledger.conftest import PostgresServer

@pytest.fixture
def cluster(postgres_server: PostgresServer, postgres_database: str, tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(postgres_server, postgres_database, tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()

