"""assets with paths and globs, and --folder for a folder inside a watched one; a folder that is not watched is an
error, not an empty list."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import yaml

from deepva_watch.commands import assets
from deepva_watch.ledger import SqliteLedger
from tests.commands.conftest import CliResult, Setup
from tests.conftest import write_config

Cli = Callable[..., CliResult]


@pytest.fixture
def tree(setup: Setup) -> Setup:
    for relpath in ("news/a.mxf", "news/b.jpg", "news/late/c.mxf", "sport/d.mxf", "e.mxf", "newsletter.pdf"):
        setup.add(relpath, "published")
    return setup


def _paths(cli: Cli, setup: Setup, *argv: str) -> list[str]:
    result = cli("assets", "-c", str(setup.config), "--json", *argv)
    assert result.code == 0, result.err
    return sorted(row["path"] for row in result.json()["assets"])


def test_absolute_globs_match_the_full_path_and_a_star_crosses_folders(tree: Setup, cli: Cli) -> None:
    watch = tree.watch
    assert _paths(cli, tree, f"{watch}/*.mxf") == ["e.mxf", "news/a.mxf", "news/late/c.mxf", "sport/d.mxf"]
    assert _paths(cli, tree, f"{watch}/news/*") == ["news/a.mxf", "news/b.jpg", "news/late/c.mxf"]
    assert _paths(cli, tree, f"{watch}/news/?.*") == ["news/a.mxf", "news/b.jpg"]
    assert _paths(cli, tree, f"{watch}/[es]*/*.mxf") == ["sport/d.mxf"]
    assert _paths(cli, tree, f"{watch}/e.mxf", f"{watch}/sport/*") == ["e.mxf", "sport/d.mxf"]  # several: any of them


def test_a_plain_path_names_a_file_or_everything_in_a_folder(tree: Setup, cli: Cli) -> None:
    assert _paths(cli, tree, str(tree.watch / "news" / "b.jpg")) == ["news/b.jpg"]
    assert _paths(cli, tree, str(tree.watch / "news")) == ["news/a.mxf", "news/b.jpg", "news/late/c.mxf"]
    assert len(_paths(cli, tree, str(tree.watch))) == 6
    assert _paths(cli, tree, str(tree.watch / "news" / "nothing.jpg")) == []  # inside a folder, not (yet) known


def test_relative_paths_start_at_the_current_folder_when_it_is_watched(
    tree: Setup, cli: Cli, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tree.watch / "news")
    assert _paths(cli, tree, "*.mxf") == ["news/a.mxf", "news/late/c.mxf"]
    assert _paths(cli, tree, "late") == ["news/late/c.mxf"]
    assert _paths(cli, tree, "../sport/*") == ["sport/d.mxf"]


def test_relative_paths_elsewhere_match_inside_every_watched_folder(
    tree: Setup, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _paths(cli, tree, "news/**") == ["news/a.mxf", "news/b.jpg", "news/late/c.mxf"]
    assert _paths(cli, tree, "news") == ["news/a.mxf", "news/b.jpg", "news/late/c.mxf"]  # not newsletter.pdf
    assert _paths(cli, tree, "*.pdf") == ["newsletter.pdf"]


def test_paths_combine_with_state_and_every_version_is_listed(tree: Setup, cli: Cli) -> None:
    tree.add("news/f.mxf", "failed", last_error="corrupt")
    path = tree.watch / "news" / "a.mxf"
    path.write_bytes(b"a newer, longer version")
    info = path.stat()
    tree.ledger.observe(str(tree.watch), "news/a.mxf", info.st_size, info.st_mtime_ns, now=2000.0)
    assert _paths(cli, tree, f"{tree.watch}/news/*", "--state", "failed") == ["news/f.mxf"]
    rows = cli("assets", "-c", str(tree.config), "--json", str(path)).json()["assets"]
    assert [(row["path"], row["state"]) for row in rows] == [("news/a.mxf", "settling"), ("news/a.mxf", "published")]


def test_the_newest_rows_come_first_and_the_limit_holds_across_chunks(
    tree: Setup, cli: Cli, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(assets, "CHUNK", 2)  # the paths picked by a glob are read a few at a time
    every = cli("assets", "-c", str(tree.config), "--json").json()["assets"]
    picked = cli("assets", "-c", str(tree.config), "--json", "--limit", "3", f"{tree.watch}/*").json()["assets"]
    assert [row["asset_id"] for row in picked] == [row["asset_id"] for row in every[:3]]
    text = cli("assets", "-c", str(tree.config), "--limit", "3", f"{tree.watch}/*")
    assert "(first 3; raise --limit to see more)" in text.out


def test_folder_takes_a_folder_inside_a_watched_one(tree: Setup, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _paths(cli, tree, "--folder", str(tree.watch / "news")) == ["news/a.mxf", "news/b.jpg", "news/late/c.mxf"]
    assert _paths(cli, tree, "--folder", str(tree.watch / "news" / "late")) == ["news/late/c.mxf"]
    assert len(_paths(cli, tree, "--folder", str(tree.watch))) == 6
    assert _paths(cli, tree, "--folder", str(tree.watch / "news"), "*.jpg") == ["news/b.jpg"]
    monkeypatch.chdir(tree.watch)
    assert _paths(cli, tree, "--folder", "sport") == ["sport/d.mxf"]


def test_nested_watched_folders_keep_their_own_files(tmp_path: Path, cli: Cli) -> None:
    """--folder for a folder that is itself watched lists that folder's rows, not those of the one around it."""
    outer, inner = tmp_path / "outer", tmp_path / "outer" / "inner"
    inner.mkdir(parents=True)
    config = write_config(tmp_path, "http://127.0.0.1:9/api/v1", [outer, inner])
    data = yaml.safe_load(config.read_text())
    data["folders"][0]["exclude"] = ["inner/*"]
    config.write_text(yaml.safe_dump(data))
    setup = Setup(config, outer, SqliteLedger(tmp_path / "ledger.sqlite3"))
    setup.add("top.jpg", "published")
    setup.ledger.observe(str(inner), "deep.jpg", 1, 1, now=1000.0)
    rows = cli("assets", "-c", str(config), "--json", "--folder", str(inner)).json()["assets"]
    assert [(row["folder"], row["path"]) for row in rows] == [(str(inner), "deep.jpg")]


@pytest.mark.parametrize("argv", [["--folder", "/elsewhere"], ["/elsewhere/*.mxf"], ["/elsewhere/a.mxf"]])
def test_a_folder_or_path_that_is_not_watched_is_a_usage_error(tree: Setup, cli: Cli, argv: list[str]) -> None:
    result = cli("assets", "-c", str(tree.config), *argv)
    assert result.code == 2 and result.out == ""
    assert len(result.err.splitlines()) == 1 and "/elsewhere" in result.err and "watched" in result.err, result.err
    as_json = cli("assets", "-c", str(tree.config), "--json", *argv)
    assert as_json.code == 2 and "/elsewhere" in as_json.json()["error"]
