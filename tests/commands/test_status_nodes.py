"""``status`` lists the daemons working on the ledger; on SQLite that is the one daemon, or none before it first
started. doctor keeps to its file checks there: the clock checks are a PostgreSQL ledger's (tests/cluster)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from tests.commands.conftest import CliResult, Setup

Cli = Callable[..., CliResult]


def test_status_shows_the_one_daemon_of_a_sqlite_ledger_and_the_rows_it_holds(setup: Setup, cli: Cli) -> None:
    """Rows held: those in a step (a job at DeepVA is tracked by whichever node tracks, not held)."""
    now = time.time()
    setup.ledger.join("media01", "media01.example", 4242, now - 5, 30.0)
    setup.add("a.mxf", "uploading")
    setup.add("b.mxf", "submitted", job_id="job-b")
    setup.add("c.jpg", "published")

    report = cli("status", "-c", str(setup.config), "--json").json()
    (node,) = report["nodes"]
    assert {key: node[key] for key in ("name", "host", "pid", "state", "rows_held", "lease_seconds", "left_at")} == {
        "name": "media01", "host": "media01.example", "pid": 4242, "state": "alive", "rows_held": 1,
        "lease_seconds": 30.0, "left_at": None}
    assert 5 <= node["last_beat_seconds_ago"] < 60 and node["started_at"] == node["last_beat"]
    text = cli("status", "-c", str(setup.config)).out
    assert "nodes: 1 of 1 alive" in text
    assert any(line.split()[:2] == ["media01", "alive"] and "media01.example pid 4242" in line
               and "1 row(s) held" in line for line in text.splitlines())

    setup.ledger.leave(time.time())
    (node,) = cli("status", "-c", str(setup.config), "--json").json()["nodes"]
    assert node["state"] == "left" and node["rows_held"] == 0 and node["left_at"] is not None
    assert "nodes: 0 of 1 alive" in cli("status", "-c", str(setup.config)).out


def test_a_daemon_silent_past_its_lease_is_dead(setup: Setup, cli: Cli) -> None:
    setup.ledger.join("media01", "media01.example", 4242, time.time() - 120, 30.0)
    (node,) = cli("status", "-c", str(setup.config), "--json").json()["nodes"]
    assert node["state"] == "dead"
    assert "last beat 2.0m ago" in cli("status", "-c", str(setup.config)).out


def test_status_before_any_daemon_joined_lists_no_node(setup: Setup, cli: Cli) -> None:
    setup.add("a.jpg", "settling")
    assert cli("status", "-c", str(setup.config), "--json").json()["nodes"] == []
    assert "nodes: none (no daemon has joined this ledger yet)" in cli("status", "-c", str(setup.config)).out


def test_doctor_on_a_sqlite_ledger_checks_the_file_and_no_clock(tmp_path: Path, setup: Setup, cli: Cli) -> None:
    setup.ledger.join("media01", "media01.example", 4242, time.time(), 30.0)
    result = cli("doctor", "-c", str(setup.config), "--json")
    names = [check["name"] for check in result.json()["checks"]]
    assert f"ledger {tmp_path / 'ledger.sqlite3'}" in names
    assert not {"clock", "node clocks", "ledger schema", "ledger password"} & set(names)
    assert any(name.startswith("disk ") for name in names)
