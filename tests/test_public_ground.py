"""Dependencies and the standard library are used through their public API only, and the package type-checks.

ruff's private-member-access rule (SLF001) finds any reach into an underscore attribute of another object; mypy in
strict mode finds a subclass that overrides what its base does not offer. Both read their settings from
pyproject.toml, so what runs here is what an engineer runs by hand.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent


def _tool(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        message = f"{module} is not installed; ./scripts/test installs it from requirements/test.lock"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def _run(*command: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_the_package_touches_no_private_member_of_anything_else() -> None:
    _tool("ruff")
    result = _run("ruff", "check", "--no-cache", "deepva_watch", "tests", "benchmarks", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_linter_refuses_a_private_access(tmp_path: Path) -> None:
    _tool("ruff")
    sample = tmp_path / "reach.py"
    sample.write_text("import http.client\n\nprint(http.client.HTTPResponse('x')._method)\n")
    result = _run("ruff", "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), str(sample))
    assert result.returncode != 0 and "SLF001" in result.stdout, result.stdout


def test_the_package_type_checks() -> None:
    _tool("mypy")
    result = _run("mypy", "deepva_watch")
    assert result.returncode == 0, result.stdout + result.stderr
