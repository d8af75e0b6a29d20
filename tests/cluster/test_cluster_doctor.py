"""doctor on a PostgreSQL ledger, against a real server: reachable with the password from its file, migrated (or
ready to be created), the clocks of this machine and the database, and nodes whose heartbeat lies in the future."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable


from deepva_watch.commands.doctor import CLOCK_SHARE_FAIL, clock_check, database_facts
from deepva_watch.config import PostgresUrl, load_config, resolve_ledger_password
from tests.cluster.nodes import LEASE, Cluster, busy_cluster
from tests.commands.conftest import CliResult
from tests.conftest import free_port
from tests.ledger.conftest import PASSWORD, PASSWORD_ROLE

Cli = Callable[..., CliResult]



def _doctor(cli: Cli, config: Path) -> tuple[CliResult, dict[str, dict[str, str]]]:
    result = cli("doctor", "-c", str(config), "--json")
    return result, {check["name"]: check for check in result.json()["checks"]}


def test_a_healthy_cluster_passes_the_ledger_and_clock_checks(cluster: Cluster, emulator: Any, cli: Cli) -> None:
    busy_cluster(cluster)
    result, checks = _doctor(cli, cluster.config(emulator.base_url))
    assert result.code == 0, result.out
    ledger = checks[f"ledger {cluster.url}"]
    assert ledger["status"] == "ok" and f"reachable as {PASSWORD_ROLE} (PostgreSQL " in ledger["detail"]
    assert checks["ledger schema"]["status"] == "ok" and "migrated" in checks["ledger schema"]["detail"]
    assert checks["clock"]["status"] == "ok" and "a third of node_lease_seconds" in checks["clock"]["detail"]
    assert checks["node clocks"] == {"name": "node clocks", "status": "ok", "fix": "",
                                     "detail": "no heartbeat of the 3 node(s) lies in the future"}
    assert not any(name.startswith("disk") and "ledger" in check["detail"] for name, check in checks.items())
    assert PASSWORD not in result.out + result.err
    text = cli("doctor", "-c", str(cluster.config(emulator.base_url)))
    assert text.code == 0 and "[ OK ] clock: this machine's clock is " in text.out


def test_a_node_whose_heartbeat_lies_in_the_future_is_named(cluster: Cluster, emulator: Any, cli: Cli) -> None:
    now = time.time()
    cluster.join("alpha", "media01", 4101, now)
    cluster.join("ahead", "media09", 4109, now + 120)  # its clock runs two minutes ahead
    result, checks = _doctor(cli, cluster.config(emulator.base_url))
    assert result.code == 1
    told = checks["node clocks"]
    assert told["status"] == "fail" and "ahead on media09 by 2.0m" in told["detail"] and "alpha" not in told["detail"]
    assert f"by more than {LEASE * CLOCK_SHARE_FAIL:.1f} s" in told["detail"] and "NTP" in told["fix"]


def test_an_empty_database_is_fine_where_the_daemon_may_create_the_ledger(cluster: Cluster, emulator: Any,
                                                                          cli: Cli) -> None:
    result, checks = _doctor(cli, cluster.config(emulator.base_url))
    assert result.code == 0, result.out
    assert checks["ledger schema"] == {"name": "ledger schema", "status": "ok", "fix": "", "detail": (
        "the database holds no ledger yet; the daemon creates it on its first start")}
    assert "node clocks" not in checks and checks["clock"]["status"] == "ok"


def test_a_user_that_may_not_create_the_ledger_is_told_what_to_grant(cluster: Cluster, emulator: Any,
                                                                    cli: Cli) -> None:
    with cluster.server.admin(cluster.database) as conn:
        conn.execute(f"ALTER DATABASE {cluster.database} OWNER TO postgres")
        conn.execute("ALTER SCHEMA public OWNER TO postgres")
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    result, checks = _doctor(cli, cluster.config(emulator.base_url))
    assert result.code == 1
    schema = checks["ledger schema"]
    assert schema["status"] == "fail" and f"{PASSWORD_ROLE} may not create tables in it (schema public)" in schema["detail"]
    assert schema["fix"].endswith(f"GRANT CREATE ON SCHEMA public TO {PASSWORD_ROLE}")


def test_a_ledger_of_a_newer_version_fails_with_what_to_install(cluster: Cluster, emulator: Any, cli: Cli) -> None:
    cluster.handle()  # creates the ledger
    with cluster.server.admin(cluster.database) as conn:
        conn.execute("INSERT INTO migrations (name, applied_at) VALUES ('from_the_future', 0)")
    result, checks = _doctor(cli, cluster.config(emulator.base_url))
    assert result.code == 1
    schema = checks["ledger schema"]
    assert schema["status"] == "fail" and "newer deepva-watch" in schema["detail"] and "from_the_future" in schema["detail"]
    assert "install the deepva-watch version" in schema["fix"]


def test_a_wrong_password_and_a_silent_server_fail_without_showing_the_password(cluster: Cluster, emulator: Any,
                                                                                cli: Cli) -> None:
    config = cluster.config(emulator.base_url)
    wrong = "wrong-Pa55word-0a9b8c"
    (cluster.tmp_path / "ledger-password").write_text(wrong + "\n")
    result, checks = _doctor(cli, config)
    assert result.code == 1
    ledger = checks[f"ledger {cluster.url}"]
    assert ledger["status"] == "fail" and "password authentication failed" in ledger["detail"]
    assert "ledger_password_file" in ledger["fix"] and "psql" in ledger["fix"]
    assert wrong not in result.out + result.err and "ledger schema" not in checks

    silent = f"postgresql://{PASSWORD_ROLE}@127.0.0.1:{free_port()}/{cluster.database}"
    result, checks = _doctor(cli, cluster.config(emulator.base_url, ledger=silent))
    assert result.code == 1 and checks[f"ledger {silent}"]["status"] == "fail"


def test_an_unreadable_password_file_is_its_own_failure(cluster: Cluster, emulator: Any, cli: Cli) -> None:
    config = cluster.config(emulator.base_url, ledger_password_file=str(cluster.tmp_path / "missing"))
    result, checks = _doctor(cli, config)
    assert result.code == 1
    assert checks["ledger password"]["status"] == "fail" and "cannot read" in checks["ledger password"]["detail"]


def test_the_clock_is_measured_against_the_database_and_judged_by_the_lease(cluster: Cluster) -> None:
    config = load_config(cluster.config(), check_paths=False)
    password = resolve_ledger_password(config)
    assert password is not None and isinstance(config.ledger, PostgresUrl)
    facts = database_facts(config.ledger, password.reveal())
    assert abs(facts.clock_offset) < 1.0 and 0 <= facts.round_trip < 1.0  # one machine: one clock
    assert not facts.has_ledger and facts.may_create and not facts.may_write

    late = clock_check(dataclasses.replace(facts, clock_offset=-6.0), LEASE)
    assert late.status == "warn" and "6.00 s behind the database's" in late.detail
    far = clock_check(dataclasses.replace(facts, clock_offset=11.0), LEASE)
    assert far.status == "fail" and "11.00 s ahead of the database's" in far.detail and "10.0 s" in far.detail
    assert clock_check(facts, LEASE).status == "ok"
