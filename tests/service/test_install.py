"""scripts/install-service: a dry run changes nothing, and an install into a prefix is complete and idempotent; the
unit it installs checks the config before the start and does not restart a daemon whose config is bad."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from deepva_watch.config import load_config
from tests.conftest import require_program, require_root, write_config

REPO = Path(__file__).parents[2]
SCRIPT = REPO / "scripts" / "install-service"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def _tree(root: Path) -> dict[str, tuple[int, int, int, bytes]]:
    return {
        str(path.relative_to(root)): (path.stat().st_mode, path.stat().st_uid, path.stat().st_gid,
                                      path.read_bytes() if path.is_file() else b"")
        for path in sorted(root.rglob("*"))
    }


def test_dry_run_only_says_what_it_would_do(tmp_path: Path) -> None:
    result = _run("--dry-run", "--root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "would run: groupadd --system --prefix" in result.stdout
    assert f"would run: install -m 0644 {REPO}/systemd/deepva-watch.service {tmp_path}/etc/systemd/system/deepva-watch.service" in result.stdout
    assert "would run: python3 -m venv" in result.stdout
    assert f"install --quiet --require-hashes --no-deps -r {REPO}/requirements/app.lock" in result.stdout
    assert "--upgrade" not in result.stdout, "the service installs the locked versions, never whatever is newest"
    assert list(tmp_path.iterdir()) == []


def test_dry_run_against_the_real_system_changes_nothing() -> None:
    result = _run("--dry-run", "--skip-venv")
    assert result.returncode == 0, result.stderr
    assert "systemctl enable --now deepva-watch" in result.stdout
    assert "+ " not in result.stdout.replace("would run: ", "")  # nothing was executed


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    require_root("installing into a prefix needs root")
    require_program("useradd")
    require_program("groupadd")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\n")
    return tmp_path


def test_install_into_a_prefix_creates_everything_once(prefix: Path) -> None:
    first = _run("--root", str(prefix), "--skip-venv")
    assert first.returncode == 0, first.stderr + first.stdout

    user = [line for line in (prefix / "etc/passwd").read_text().splitlines() if line.startswith("deepva-watch:")]
    assert len(user) == 1 and user[0].endswith(":/var/lib/deepva-watch:/usr/sbin/nologin")
    gid = int(next(line for line in (prefix / "etc/group").read_text().splitlines() if line.startswith("deepva-watch:")).split(":")[2])
    uid = int(user[0].split(":")[2])

    key = prefix / "etc/deepva-watch/api-key"
    info = key.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, key.read_text()) == (0o640, 0, gid, "")
    state = (prefix / "var/lib/deepva-watch").stat()
    assert (stat.S_IMODE(state.st_mode), state.st_uid, state.st_gid) == (0o750, uid, gid)
    unit = prefix / "etc/systemd/system/deepva-watch.service"
    assert unit.read_bytes() == (REPO / "systemd/deepva-watch.service").read_bytes()

    config_path = prefix / "etc/deepva-watch/config.yaml"
    config = load_config(config_path, check_paths=False)
    assert config.api.key_file is None  # the unit hands the key over as a credential

    key.write_text("the-operators-real-key\n")
    config_path.write_text(config_path.read_text() + "# edited by the operator\n")
    before = _tree(prefix)
    second = _run("--root", str(prefix), "--skip-venv")
    assert second.returncode == 0, second.stderr
    assert "+ " not in second.stdout  # nothing to do the second time
    assert "api key" in second.stdout and "exists, kept" in second.stdout
    assert _tree(prefix) == before


def test_an_outdated_unit_is_replaced(prefix: Path) -> None:
    assert _run("--root", str(prefix), "--skip-venv").returncode == 0
    unit = prefix / "etc/systemd/system/deepva-watch.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    result = _run("--root", str(prefix), "--skip-venv")
    assert f"+ install -m 0644 {REPO}/systemd/deepva-watch.service {unit}" in result.stdout
    assert unit.read_bytes() == (REPO / "systemd/deepva-watch.service").read_bytes()


def _unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (REPO / "systemd/deepva-watch.service").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_a_bad_config_is_checked_before_the_start_and_not_restarted() -> None:
    settings = _unit_settings()
    assert settings["RestartPreventExitStatus"] == ["2"]
    (start,) = settings["ExecStart"]
    (pre,) = settings["ExecStartPre"]
    assert pre == "-/opt/deepva-watch/bin/deepva-watch check-config -c /etc/deepva-watch/config.yaml"
    assert start == pre.lstrip("-").replace(" check-config ", " run ")  # the same program and config as the daemon
    assert settings["Restart"] == ["on-failure"]


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_the_units_commands_exit_2_on_a_bad_config(tmp_path: Path, command: str) -> None:
    """What RestartPreventExitStatus=2 relies on, with the unit's own arguments, in a real process."""
    pre = _unit_settings()["ExecStartPre"][0].lstrip("-").split()
    argv = [sys.executable, "-m", "deepva_watch", command, *pre[2:]]
    assert argv[-2:] == ["-c", "/etc/deepva-watch/config.yaml"]
    good = write_config(tmp_path, "http://127.0.0.1:9/api/v1", [tmp_path])
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace(f"path: {tmp_path}", f"path: {tmp_path / 'missing'}"))
    result = subprocess.run([*argv[:-1], str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "config error: folders[0].path" in result.stderr
    if command == "check-config":
        result = subprocess.run([*argv[:-1], str(good)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and ": OK — 1 folder(s)" in result.stdout, result.stdout + result.stderr
