"""The README keeps up with the code: every command and every documented file exists, both set-up commands work."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from deepva_watch.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_cli_command_is_in_the_readme(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    commands = re.search(r"\{([a-z,-]+)\}", capsys.readouterr().out).group(1).split(",")
    assert "run" in commands and "doctor" in commands
    missing = [name for name in commands if f"deepva-watch {name}" not in README]
    assert not missing, f"undocumented commands: {missing}"


def test_the_two_setup_commands_are_shown_and_runnable():
    for script in ("scripts/demo", "scripts/test"):
        assert f"./{script}" in README
        assert os.access(ROOT / script, os.X_OK), f"{script} lost its run bit"
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_linked_documents_exist():
    for target in re.findall(r"\]\(([^)#:]+)\)", README):
        assert (ROOT / target).exists(), f"README links to a missing file: {target}"


def test_every_test_a_document_names_exists():
    """A promise in the README or docs/RELIABILITY.md names the test that holds it: that test must exist."""
    named = []
    for document in (ROOT / "README.md", ROOT / "docs" / "RELIABILITY.md"):
        text = document.read_text()
        for path, name in re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", text):
            named.append((document.name, path, name))
        last = None
        for path, name in re.findall(r"`(?:(tests/[\w/]+\.py)|…)::(\w+)`", text):  # `…::name`: the file before
            last = path or last
            named.append((document.name, last, name))
    assert len(named) > 30
    for document, path, name in named:
        source = ROOT / path
        assert source.is_file(), f"{document} names a missing test file: {path}"
        assert not name or re.search(rf"^def {name}\(", source.read_text(), re.M), f"{document}: no {path}::{name}"
