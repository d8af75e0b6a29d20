"""show: a file's whole story from the ledger, by path or asset id, as text and as JSON."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pytest

from deepva_watch.ledger import Asset
from deepva_watch.states import State
from tests.commands.conftest import CliResult, Setup

Cli = Callable[..., CliResult]


def _asset(setup: Setup, asset_id: str | None) -> Asset:
    asset = setup.ledger.by_asset_id(asset_id or "")
    assert asset is not None
    return asset


def _two_versions(setup: Setup) -> tuple[Path, Asset, Asset]:
    """news/clip.mxf: a first version superseded while settling, a second one retried once and published."""
    path = setup.watch / "news" / "clip.mxf"
    path.parent.mkdir()
    path.write_bytes(b"x" * 20)
    folder, relpath = str(setup.watch), "news/clip.mxf"
    ledger = setup.ledger
    first = _asset(setup, ledger.observe(folder, relpath, 10, 1, now=1000.0).asset_id)
    ledger.transition(first, State.SETTLING, State.SETTLED, 1012.0, stage="settle")
    second = _asset(setup, ledger.observe(folder, relpath, 20, 2, now=1030.0).asset_id)
    xmp = setup.watch / "news" / "clip.xmp"
    xmp.write_text("<x:xmpmeta/>")
    for expected, to, at, stage, changes in [
        (State.SETTLING, State.SETTLED, 1040.0, "settle", {}),
        (State.SETTLED, State.ACCEPTED, 1041.0, "sniff", {"kind": "video", "mime": "application/mxf"}),
        (State.ACCEPTED, State.ACCEPTED, 1050.0, "upload", {"attempts": 1, "last_error": "HTTP 503 from POST /storage/"}),
        (State.ACCEPTED, State.UPLOADED, 1100.0, "upload", {"attempts": 0, "last_error": None,
                                                            "storage_url": "storage://x"}),
        (State.UPLOADED, State.SUBMITTED, 1101.0, "submit", {"job_id": "job-7", "submitted_at": 1101.0,
                                                             "job_state": "waiting"}),
        (State.SUBMITTED, State.COMPLETED, 1160.0, "track", {"job_state": "completed", "completed_at": 1160.0,
                                                             "job_seconds": 59.0}),
        (State.COMPLETED, State.PUBLISHED, 1161.0, "publish", {
            "published_at": 1161.0, "xmp_path": str(xmp),
            "json_path": str(setup.watch / "news" / "clip.mxf.deepva.json")}),
    ]:
        second = ledger.transition(second, expected, to, at, stage=stage, **changes)
    return path, _asset(setup, first.asset_id), second


def test_show_tells_every_version_with_its_steps_job_and_sidecars(setup: Setup, cli: Cli) -> None:
    path, first, second = _two_versions(setup)

    result = cli("show", str(path), "-c", str(setup.config), "--json")
    assert result.code == 0, result.err
    story = result.json()
    assert (story["folder"], story["path"], story["full_path"], story["asked"]) == (
        str(setup.watch), "news/clip.mxf", str(path), None)
    old, new = story["versions"]
    assert (old["asset_id"], old["state"], old["size"]) == (first.asset_id, "superseded", 10)
    assert [(step["from"], step["to"], step["stage"], step["seconds"]) for step in old["steps"]] == [
        (None, "settling", "discover", 12.0),
        ("settling", "settled", "settle", 18.0),
        ("settled", "superseded", "discover", None),
    ]
    assert old["steps"][-1]["error"] == "a newer version of the file arrived"
    assert old["job"] is None and old["sidecars"] == {"xmp": None, "json": None} and old["waiting_seconds"] is None

    assert (new["asset_id"], new["state"], new["kind"]) == (second.asset_id, "published", "video")
    steps = [(step["from"], step["to"], step["stage"], step["attempt"], step["error"], step["job_id"], step["seconds"])
             for step in new["steps"]]
    assert steps == [
        (None, "settling", "discover", 0, None, None, 10.0),
        ("settling", "settled", "settle", 0, None, None, 1.0),
        ("settled", "accepted", "sniff", 0, None, None, 9.0),
        ("accepted", "accepted", "upload", 1, "HTTP 503 from POST /storage/", None, 50.0),
        ("accepted", "uploaded", "upload", 0, None, None, 1.0),
        ("uploaded", "submitted", "submit", 0, None, "job-7", 59.0),
        ("submitted", "completed", "track", 0, None, "job-7", 1.0),
        ("completed", "published", "publish", 0, None, "job-7", None),
    ]
    assert new["steps"][0]["at"] == "1970-01-01T00:17:10+00:00"
    assert new["job"] == {"id": "job-7", "state": "completed", "progress": None, "errors": [],
                          "submitted_at": "1970-01-01T00:18:21+00:00", "completed_at": "1970-01-01T00:19:20+00:00",
                          "seconds": 59.0}
    assert new["sidecars"] == {
        "xmp": {"path": str(setup.watch / "news" / "clip.xmp"), "exists": True},
        "json": {"path": str(setup.watch / "news" / "clip.mxf.deepva.json"), "exists": False},
    }

    text = cli("show", str(path), "-c", str(setup.config))
    assert text.code == 0, text.err
    assert f"{path}: 2 version(s), oldest first" in text.out
    assert f"version 2: {second.asset_id}  published  20 bytes" in text.out
    assert "job job-7: completed, 59s at DeepVA" in text.out
    assert "json sidecar: " in text.out and "clip.mxf.deepva.json (missing now)" in text.out
    lines = text.out.splitlines()
    retry = next(line for line in lines if "HTTP 503" in line)
    assert "accepted → accepted" in retry and "upload" in retry and "50s" in retry and "attempt 1" in retry
    superseded = next(line for line in lines if "→ superseded" in line)
    assert "settled → superseded" in superseded  # the origin a sighting does not record is the step before
    assert sum("job job-7" in line for line in lines) == 2  # the job line, and the step that created the job


def test_show_finds_the_file_by_asset_id_or_a_path_relative_to_the_current_folder(
    setup: Setup, cli: Cli, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, first, second = _two_versions(setup)
    by_id = cli("show", first.asset_id, "-c", str(setup.config), "--json").json()
    assert by_id["asked"] == first.asset_id and by_id["path"] == "news/clip.mxf"
    assert [version["asset_id"] for version in by_id["versions"]] == [first.asset_id, second.asset_id]
    assert "← asked" in next(line for line in cli("show", first.asset_id, "-c", str(setup.config)).out.splitlines()
                             if line.startswith("version 1:"))

    monkeypatch.chdir(setup.watch / "news")
    relative = cli("show", "clip.mxf", "-c", str(setup.config), "--json")
    assert relative.code == 0
    assert [(version["asset_id"], version["steps"]) for version in relative.json()["versions"]] == [
        (version["asset_id"], version["steps"]) for version in by_id["versions"]]


def test_show_counts_the_time_a_waiting_version_has_waited(setup: Setup, cli: Cli) -> None:
    (setup.watch / "slow.mp4").write_bytes(b"x")
    observed = setup.ledger.observe(str(setup.watch), "slow.mp4", 1, 1, now=time.time() - 120)
    setup.ledger.transition(_asset(setup, observed.asset_id), State.SETTLING, State.SETTLED, time.time() - 90,
                            stage="settle")
    version = cli("show", str(setup.watch / "slow.mp4"), "-c", str(setup.config), "--json").json()["versions"][0]
    assert version["steps"][-1]["seconds"] is None
    assert 85 <= version["waiting_seconds"] <= 150
    text = cli("show", str(setup.watch / "slow.mp4"), "-c", str(setup.config)).out
    assert "so far" in next(line for line in text.splitlines() if "settling → settled" in line)


@pytest.mark.parametrize("target", ["never-seen.jpg", "dvw-0123456789abcdef0123456789abcdef", "/elsewhere/a.jpg"])
def test_show_of_something_unknown_exits_1_with_one_line(setup: Setup, cli: Cli, target: str) -> None:
    setup.add("known.jpg", "published")
    given = str(setup.watch / target) if target.endswith("never-seen.jpg") else target
    result = cli("show", given, "-c", str(setup.config))
    assert result.code == 1 and result.out == ""
    assert len(result.err.splitlines()) == 1 and result.err.startswith("deepva-watch show: "), result.err
    as_json = cli("show", given, "-c", str(setup.config), "--json")
    assert as_json.code == 1 and set(as_json.json()) == {"error"}
