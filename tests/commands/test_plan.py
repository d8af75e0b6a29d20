"""plan: the dry run counts what the files hold (minutes checked against ffprobe) and writes nothing anywhere."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable

import yaml

from tests.commands.conftest import CliResult
from tests.conftest import FIXTURES, require_program, write_config

Cli = Callable[..., CliResult]
VIDEOS = ["sample.mp4", "sample.mov", "sample.mpg", "sample.mxf", "ntsc.mp4", "pal50.mp4"]
IMAGES = ["sample.jpg", "sample.png", "portrait.jpg"]


def _minutes(path: Path) -> float:
    seconds = subprocess.run([require_program("ffprobe"), "-v", "error", "-show_entries", "format=duration", "-of",
                              "default=nw=1:nk=1", str(path)], check=True, capture_output=True, text=True).stdout
    return float(seconds) / 60


def _snapshot(root: Path) -> dict[str, int]:
    return {str(path): path.stat().st_mtime_ns for path in root.rglob("*")}


def test_plan_counts_files_bytes_and_minutes_as_they_are(tmp_path: Path, cli: Cli) -> None:
    news, archive = tmp_path / "news", tmp_path / "archive"
    for index, name in enumerate(VIDEOS + IMAGES):
        target = news / f"day{index % 3}" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / name, target)
    shutil.copy(FIXTURES / "text-named.jpg", news / "not-really.jpg")
    shutil.copy(FIXTURES / "html-named.jpg", news / "error-page.jpg")
    archive.mkdir()
    shutil.copy(FIXTURES / "sample.mp4", archive / "old.mp4")
    config = write_config(tmp_path, "http://127.0.0.1:9/api/v1", [news, archive])
    data = yaml.safe_load(config.read_text())
    data["folders"][1]["existing"] = "skip"
    data["budget"] = {"images_per_day": 2}
    config.write_text(yaml.safe_dump(data))
    before = _snapshot(tmp_path)

    result = cli("plan", "-c", str(config), "--json")

    assert result.code == 0, result.err
    report = result.json()
    by_folder = {Path(entry["folder"]).name: entry for entry in report["folders"]}
    assert (by_folder["news"]["images"], by_folder["news"]["videos"], by_folder["news"]["not_media"]) == (3, 6, 2)
    assert by_folder["news"]["bytes"] == sum((FIXTURES / name).stat().st_size for name in VIDEOS + IMAGES)
    expected = sum(_minutes(FIXTURES / name) for name in VIDEOS)
    assert abs(by_folder["news"]["video_minutes"] - expected) < 0.01, (by_folder["news"]["video_minutes"], expected)
    assert (by_folder["archive"]["files"], by_folder["archive"]["skipped"]) == (0, 1)
    assert report["total"]["images"] == 3 and report["budget"] == {"image_days": 1.5}
    assert by_folder["news"]["modules"] == ["face_recognition", "object_scene_recognition"]
    assert _snapshot(tmp_path) == before, "a dry run writes nothing (no ledger, no sidecar)"

    text = cli("plan", "-c", str(config))
    assert text.code == 0 and "9 file(s) would be submitted" in text.out and "1 skipped (existing)" in text.out
