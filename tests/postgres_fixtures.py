"""The PostgreSQL fixtures, registered once in the root ``conftest.py`` so that every folder shares one throwaway
server per session (``benchmarks/pgcluster.py``) and gets a fresh database per test.

A test that needs PostgreSQL skips on a developer's machine without it, and fails in CI.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from pgcluster import PASSWORD, PASSWORD_ROLE, Cluster, PostgresFailed, PostgresMissing, throwaway_cluster  # noqa: E402

PostgresServer = Cluster
__all__ = ["PASSWORD", "PASSWORD_ROLE", "PostgresServer", "postgres_database", "postgres_server", "postgres_url"]


def _missing(message: str) -> NoReturn:
    """Skip (on a developer's machine) or fail (in CI) when what the PostgreSQL tests need is not there."""
    from tests.conftest import IN_CI

    if IN_CI:
        pytest.fail(f"CI must run the PostgreSQL ledger's tests: {message}")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        with throwaway_cluster() as cluster:
            yield cluster
    except PostgresMissing as missing:
        _missing(str(missing))
    except PostgresFailed as failed:
        pytest.fail(f"the test PostgreSQL could not be made: {failed}")


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """The name of a fresh, empty database of the test cluster (owned by the password role, so it may use it)."""
    name = postgres_server.create_database()
    yield name
    postgres_server.drop_database(name)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, postgres_database: str) -> str:
    """The fresh database's URL for the superuser, which connects without a password."""
    return postgres_server.url(postgres_database)
