"""The systemd unit: systemd itself must accept it, rate it well, and the hardening must not break the daemon."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_program

UNIT = Path(__file__).parents[2] / "systemd" / "deepva-watch.service"
MAX_EXPOSURE = 2.5


def _unit_with_existing_binary(tmp_path: Path) -> Path:
    """verify insists that ExecStart's program exists; this machine has no /opt/deepva-watch, so point it elsewhere."""
    text = UNIT.read_text()
    assert "ExecStart=/opt/deepva-watch/bin/deepva-watch run -c /etc/deepva-watch/config.yaml" in text
    copy = tmp_path / "deepva-watch.service"
    copy.write_text(text.replace("/opt/deepva-watch/bin/deepva-watch", sys.executable))
    return copy


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = require_program("systemd-analyze")
    result = subprocess.run([analyze, "verify", str(_unit_with_existing_binary(tmp_path))], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "deepva-watch.service" not in result.stderr, result.stderr  # warnings about our unit are failures too


def test_systemd_analyze_security_rates_the_unit_at_most_2_5(tmp_path: Path) -> None:
    analyze = require_program("systemd-analyze")
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(_unit_with_existing_binary(tmp_path))],
        capture_output=True, text=True,
    )
    match = re.search(r"Overall exposure level for deepva-watch\.service: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


def test_the_unit_declares_what_operators_rely_on() -> None:
    settings = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    expected = {
        "Type": ["notify"],
        "Restart": ["on-failure"],
        "User": ["deepva-watch"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "LoadCredential": ["deepva-api-key:/etc/deepva-watch/api-key"],
        "ProtectSystem": ["strict"],
        "CapabilityBoundingSet": [""],
        "NoNewPrivileges": ["true"],
        "MemoryDenyWriteExecute": ["true"],
    }
    for key, value in expected.items():
        assert settings.get(key) == value, key
    assert "WatchdogSec" in settings
    assert "/var/lib/deepva-watch" in settings["ReadWritePaths"][0]
    assert settings["SystemCallFilter"][0] == "@system-service"


PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1

_UNDER_MDWE = """
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except OSError:
    pass
else:
    sys.exit("a writable and executable mapping was allowed: the kernel did not enforce MDWE")
from pathlib import Path
from deepva_watch.media.probe import probe_with_mediainfo
import deepva_watch.cli, deepva_watch.deepva, deepva_watch.ledger, deepva_watch.service.metrics, watchdog.observers, requests
facts = probe_with_mediainfo(Path(sys.argv[1]), "video/mp4", "video")
print(facts.width if facts else None)
"""


def test_daemon_code_and_libmediainfo_work_under_memory_deny_write_execute(media_fixtures: Path) -> None:
    """MemoryDenyWriteExecute=true uses the same kernel rule as PR_SET_MDWE (Linux 6.3+): no W+X memory, ever.

    pymediainfo loads libmediainfo through ctypes; loading a library maps it read+execute, which is allowed, so probing
    must keep working with the rule in force.
    """
    result = subprocess.run(
        [sys.executable, "-c", _UNDER_MDWE, str(media_fixtures / "sample.mp4")], capture_output=True, text=True, timeout=60
    )
    if result.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+); systemd enforces the same rule with seccomp")
    assert result.returncode == 0, result.stderr
    if result.stdout.strip() == "None":
        pytest.skip("libmediainfo is not installed here, so there was nothing to load")
    assert result.stdout.strip() == "160"
