"""The command line: one parseable line once listening, a key that need not be in argv, a clean stop on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from deepva_watch.emulator.cli import build_parser, fault_settings, main

LISTENING = re.compile(r"^emulator listening on (http://127\.0\.0\.1:\d+/api/v1)$")
SECRET = "cli-secret-key-5150"


def _run(arguments: list[str], tmp_path: Path, environment: dict[str, str] | None = None) -> tuple[str, str, int]:
    """Starts the emulator, checks it answers with the expected key, stops it with SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "deepva_watch.emulator", "--port", "0", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(environment or {})},
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        match = LISTENING.match(line)
        assert match, line
        base_url = match.group(1)
        assert (
            requests.get(base_url + "/jobs/", headers={"Authorization": f"Key {SECRET}"}, timeout=5).status_code == 200
        )
        assert requests.get(base_url + "/jobs/", headers={"Authorization": "Key other"}, timeout=5).status_code == 401
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return line + stdout, stderr, process.returncode


def test_key_from_file_and_clean_stop(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(SECRET + "\n", encoding="utf-8")
    data_dir = tmp_path / "data"
    stdout, stderr, code = _run(["--key-file", str(key_file), "--data-dir", str(data_dir)], tmp_path)
    assert code == 0
    assert "DeepVA emulator (not the real service) listening on" in stderr
    assert SECRET not in stdout + stderr
    assert (data_dir / "storage").is_dir()


def test_key_from_environment(tmp_path: Path) -> None:
    stdout, stderr, code = _run([], tmp_path, {"DEEPVA_EMULATOR_KEY": SECRET})
    assert code == 0
    assert SECRET not in stdout + stderr


def test_empty_key_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("\n", encoding="utf-8")
    with pytest.raises(SystemExit) as stopped:
        main(["--key-file", str(key_file)])
    assert stopped.value.code == 2
    assert "empty" in capsys.readouterr().err


def test_port_in_use_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port), "--key", "k", "--data-dir", str(tmp_path / "d")]) == 1
    assert f"127.0.0.1:{port}" in capsys.readouterr().err


def test_onprem_webhook_and_fault_flags(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(SECRET + "\n", encoding="utf-8")
    secret_file = tmp_path / "hook-secret"
    secret_file.write_text("hook-secret-value\n", encoding="utf-8")
    faults_file = tmp_path / "faults.json"
    faults_file.write_text('{"job_failure_every": 3, "seed": 5}', encoding="utf-8")
    watched = tmp_path / "watched"
    watched.mkdir()
    stdout, stderr, code = _run(
        [
            "--key-file", str(key_file),
            "--onprem-root", f"/mnt/media={watched}",
            "--onprem-root", f"\\\\nas\\share={watched}",
            "--webhook-secret-file", str(secret_file),
            "--faults-json", str(faults_file),
            "--job-failure-rate", "0.25",
        ],
        tmp_path,
    )  # fmt: skip
    assert code == 0
    assert "hook-secret-value" not in stdout + stderr


def test_fault_flags_override_the_json_file(tmp_path: Path) -> None:
    faults_file = tmp_path / "faults.json"
    faults_file.write_text('{"error_rate": 0.5, "seed": 5, "retry_after": 9}', encoding="utf-8")
    arguments = build_parser().parse_args(
        ["--faults-json", str(faults_file), "--fault-rate", "0.1", "--reset-rate", "0.02", "--fault-seed", "8"]
    )
    assert fault_settings(arguments) == {
        "error_rate": 0.1, "seed": 8, "retry_after": 9, "reset_rate": {"POST /api/v1/storage/": 0.02},
    }  # fmt: skip


@pytest.mark.parametrize(
    "arguments",
    [["--onprem-root", "/mnt/media"], ["--onprem-root", "relative=/tmp"], ["--fault-rate", "3"]],
)
def test_bad_new_flags_are_usage_errors(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(arguments)
    assert stopped.value.code == 2
