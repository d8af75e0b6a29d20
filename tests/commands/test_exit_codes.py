"""Exit codes: documented in --help, status's answer to "is the daemon healthy?", usage errors, and a closed pipe
(``| head``) that ends a command quietly — the last through real processes and real pipes."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from deepva_watch.cli import EXIT_CODES, main
from deepva_watch.listener import Listener
from deepva_watch.service.health import Health
from deepva_watch.service.metrics import Metrics
from deepva_watch.service.web import web_app
from tests.commands.conftest import CliResult, Setup
from tests.conftest import free_port, require_program, write_config

Cli = Callable[..., CliResult]


@pytest.mark.parametrize("argv", [["--help"], ["status", "--help"], ["show", "--help"], ["assets", "--help"]])
def test_help_lists_the_exit_codes(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert EXIT_CODES in out
    for code in ("0 ", "1 ", "2 ", "141 "):
        assert f"\n  {code}" in out


@pytest.mark.parametrize("argv", [["assets", "--bogus"], ["show"], ["assets", "--older-than", "soon"]])
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert "usage: deepva-watch" in capsys.readouterr().err


def test_a_bad_config_exits_2_for_every_command(tmp_path: Path, cli: Cli) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("folders: 3\n")
    for argv in (["status"], ["show", "/srv/a.jpg"], ["assets"]):
        result = cli(*argv, "-c", str(config))
        assert result.code == 2 and result.err.startswith("deepva-watch: config error: folders"), (argv, result.err)


@dataclass(frozen=True)
class Folder:
    """The fields of a folder's watch status that health reads."""

    folder: str
    paused: bool = False
    reason: str = ""
    last_scan_at: float | None = None
    warning: str = ""
    events_missed: int = 0
    names_skipped: int = 0


@dataclass
class Daemon:
    """The daemon's real /healthz on a real port, with folders the test can change."""

    config: Path
    folders: list[Folder]


@pytest.fixture
def daemon(setup: Setup) -> Iterator[Daemon]:
    folders: list[Folder] = []
    health = Health(api_failure_seconds=60, folder_statuses=lambda: folders, ledger_problem=lambda: None)
    metrics = Metrics(ledger_counts=dict, folder_statuses=lambda: folders)
    server = Listener("127.0.0.1:0", web_app(metrics, health), name="metrics").start()
    host, port = server.address
    config = write_config(setup.config.parent, "http://127.0.0.1:9/api/v1", [setup.watch],
                          metrics={"listen": f"{host}:{port}"})
    try:
        yield Daemon(config, folders)
    finally:
        server.stop()


def test_status_exits_0_while_the_daemon_is_healthy_or_degraded_and_1_when_unhealthy(daemon: Daemon, cli: Cli) -> None:
    healthy = cli("status", "-c", str(daemon.config), "--json")
    assert (healthy.code, healthy.json()["health"]) == (0, "ok")
    assert cli("status", "-c", str(daemon.config)).out.rstrip().endswith("health: ok")

    daemon.folders.append(Folder("/srv/in", warning="events went deaf: polled instead"))
    degraded = cli("status", "-c", str(daemon.config), "--json")
    assert (degraded.code, degraded.json()["health"]) == (0, "degraded")

    daemon.folders.append(Folder("/srv/share", paused=True, reason="root gone"))
    unhealthy = cli("status", "-c", str(daemon.config), "--json")
    assert (unhealthy.code, unhealthy.json()["health"]) == (1, "unhealthy")
    text = cli("status", "-c", str(daemon.config))
    assert text.code == 1 and "health: UNHEALTHY — folder /srv/share is paused: root gone" in text.out


def test_status_exits_1_when_the_daemon_does_not_answer(setup: Setup, cli: Cli) -> None:
    config = write_config(setup.config.parent, "http://127.0.0.1:9/api/v1", [setup.watch],
                          metrics={"listen": f"127.0.0.1:{free_port()}"})  # the daemon is not running
    result = cli("status", "-c", str(config), "--json")
    assert (result.code, result.json()["health"]) == (1, "unreachable")
    text = cli("status", "-c", str(config))
    assert text.code == 1 and "health: NO ANSWER — the daemon's endpoint did not answer" in text.out


def test_status_exits_1_when_something_else_answers_on_the_port(setup: Setup, cli: Cli) -> None:
    def not_ours(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("404 Not Found", [("Content-Type", "text/html")])
        return [b"<html>nothing here</html>"]

    server = Listener("127.0.0.1:0", not_ours, name="other").start()
    try:
        host, port = server.address
        config = write_config(setup.config.parent, "http://127.0.0.1:9/api/v1", [setup.watch],
                              metrics={"listen": f"{host}:{port}"})
        result = cli("status", "-c", str(config), "--json")
    finally:
        server.stop()
    assert (result.code, result.json()["health"]) == (1, "unreachable")
    assert "not as deepva-watch's /healthz" in result.json()["api"]["detail"]


def test_status_without_metrics_listen_exits_0_and_says_health_is_unknown(setup: Setup, cli: Cli) -> None:
    setup.add("a.jpg", "failed", last_error="x")
    result = cli("status", "-c", str(setup.config), "--json")
    assert (result.code, result.json()["health"]) == (0, "unknown")
    text = cli("status", "-c", str(setup.config))
    assert text.code == 0 and "health: unknown — metrics.listen is not set" in text.out


def _command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "deepva_watch", *argv]


@pytest.mark.parametrize("argv", [["status"], ["status", "--json"], ["assets"], ["assets", "--json"], ["show", "a.jpg"]])
def test_a_reader_gone_before_the_output_ends_the_command_quietly_with_141(setup: Setup, argv: list[str]) -> None:
    setup.add("a.jpg", "published")
    read, write = os.pipe()
    process = subprocess.Popen(_command(*argv, "-c", str(setup.config)), stdout=write, stderr=subprocess.PIPE,
                               cwd=setup.watch)
    os.close(write)
    os.close(read)  # the reader is gone before the command (still importing) writes its first byte
    _, err = process.communicate(timeout=60)
    assert (process.returncode, err.decode()) == (141, "")


@pytest.fixture
def many(setup: Setup) -> Setup:
    """More rows than a pipe holds as JSON (a pipe buffers 64 KiB), so a reader that stops early always shows."""
    setup.ledger.observe_new_paths(str(setup.watch), [(f"clip-{index:04}.mxf", 10, 1) for index in range(600)], 1000.0)
    return setup


def test_a_pipe_into_head_ends_quietly(many: Setup) -> None:
    bash = require_program("bash")
    script = '"$@" | head -c 10; echo " codes:${PIPESTATUS[*]}"'
    result = subprocess.run([bash, "-c", script, "-", *_command("assets", "--json", "--limit", "1000", "-c",
                                                                  str(many.config))],
                            capture_output=True, text=True, timeout=60)
    assert result.stderr == ""
    assert result.stdout == '{\n  "asset codes:141 0\n'

    script = '"$@" | head -1; echo "codes:${PIPESTATUS[*]}"'
    result = subprocess.run([bash, "-c", script, "-", *_command("status", "-c", str(many.config))],
                            capture_output=True, text=True, timeout=60)
    assert result.stderr == ""
    first, codes = result.stdout.splitlines()
    assert first.startswith("ledger ") and first.endswith("file(s) not finished")
    assert codes in ("codes:0 0", "codes:141 0")  # a short answer may be in the pipe before head closes it
