"""Shared helpers for the hostile-input tests: a fake DeepVA with scripted answers, and waiting for final states."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import API_KEY, ledger_rows, wait_for
from tests.hostile.fake_deepva import FakeDeepVA

FINAL = {"published", "rejected", "failed", "gone", "superseded"}


@pytest.fixture
def fake_deepva() -> Iterator[FakeDeepVA]:
    server = FakeDeepVA(API_KEY).start()
    try:
        yield server
    finally:
        server.stop()


def rows_when_final(ledger: Path, expected: int, timeout: float = 60.0, what: str = "every file final") -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]]:
        rows = ledger_rows(ledger)
        return rows if len(rows) >= expected and all(row["state"] in FINAL for row in rows) else []

    try:
        return wait_for(check, timeout, what)
    except AssertionError as error:
        states = [(row["relpath"], row["state"], row["last_error"]) for row in ledger_rows(ledger)]
        raise AssertionError(f"{error}; ledger: {states}") from None


def snapshot(root: Path) -> set[str]:
    """Every path below ``root`` (files, folders, links), without following links."""
    found: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            found.add(os.path.join(folder, name))
    return found


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")
