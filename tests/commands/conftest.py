"""Operator commands run through the real CLI entry point, against a real ledger file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import structlog

from deepva_watch.cli import main
from deepva_watch.ledger import Asset, Ledger, SqliteLedger
from deepva_watch.states import State
from tests.conftest import write_config


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    def run(*argv: str) -> CliResult:
        capsys.readouterr()
        logging = structlog.get_config()  # commands send logs to the (captured, soon closed) stderr: put it back after
        try:
            code = main(list(argv))
        finally:
            structlog.configure(**logging)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@dataclass
class Setup:
    config: Path
    watch: Path
    ledger: Ledger

    def add(self, relpath: str, state: str, **changes: Any) -> Asset:
        """A row for a real file in the watched folder, moved straight to ``state`` with ``changes``."""
        path = self.watch / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 10)
        info = path.stat()
        observation = self.ledger.observe(str(self.watch), relpath, info.st_size, info.st_mtime_ns, now=1000.0)
        asset = self.ledger.by_asset_id(observation.asset_id or "")
        assert asset is not None
        return self.ledger.transition(asset, asset.state, State(state), 1000.0, **changes)

    def row(self, relpath: str) -> Asset:
        asset = self.ledger.latest_version(str(self.watch), relpath)
        assert asset is not None
        return asset


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    watch = tmp_path / "watch"
    watch.mkdir()
    config = write_config(tmp_path, "http://127.0.0.1:9/api/v1", [watch])
    return Setup(config, watch, SqliteLedger(tmp_path / "ledger.sqlite3"))
