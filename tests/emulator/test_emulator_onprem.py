"""On-prem mode: local-path sources under configured server-view prefixes are read from mapped local directories."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from deepva_watch.emulator import Emulator, EmulatorConfig
from tests.conftest import held_to_file_modes

from .conftest import API_KEY, PROCESSING_TIME, Api, SteppedClock, session_with_key

JPEG = b"\xff\xd8\xff\xe0" + b"on-prem photo" * 50
OTHER_JPEG = b"\xff\xd8\xff\xe0" + b"a different photo" * 50
MODULES = {"face_recognition": {}, "object_scene_recognition": {}}


@pytest.fixture
def shares(tmp_path: Path) -> dict[str, Path]:
    """Three local folders standing for a POSIX share, a nested share and a UNC share."""
    folders = {name: tmp_path / name for name in ("media", "deep", "unc", "outside")}
    for folder in folders.values():
        folder.mkdir()
    (folders["media"] / "news").mkdir()
    (folders["media"] / "news" / "clip.jpg").write_bytes(JPEG)
    (folders["deep"] / "clip.jpg").write_bytes(OTHER_JPEG)
    (folders["unc"] / "Sport").mkdir()
    (folders["unc"] / "Sport" / "goal.jpg").write_bytes(JPEG)
    (folders["outside"] / "secret.jpg").write_bytes(OTHER_JPEG)
    return folders


@pytest.fixture
def onprem(shares: dict[str, Path], clock: SteppedClock, tmp_path: Path) -> Iterator[Api]:
    roots = {
        "/mnt/media": shares["media"],
        "/mnt/media/deep/": shares["deep"],
        "\\\\nas\\share": shares["unc"],
    }
    config = EmulatorConfig(
        data_dir=tmp_path / "data", api_key=API_KEY, processing_time=PROCESSING_TIME, clock=clock, onprem_roots=roots
    )
    with Emulator(config) as emulator, session_with_key() as session:
        yield Api(emulator, session)


def _create(api: Api, source: str) -> requests.Response:
    return api.post("/jobs/", json={"sources": [source], "modules": MODULES})


def _completed(api: Api, clock: SteppedClock, job_id: str) -> dict[str, Any]:
    clock.advance(PROCESSING_TIME)
    job: dict[str, Any] = api.get(f"/jobs/{job_id}/").json()
    assert job["state"] == "completed"
    return job


def _items(job: dict[str, Any]) -> list[Any]:
    return [entry["items"] for entry in job["result"]["summary"]]


def test_posix_path_under_a_root_is_analysed_from_the_mapped_file(
    onprem: Api, clock: SteppedClock, api: Api
) -> None:
    response = _create(onprem, "/mnt/media/news/clip.jpg")
    assert response.status_code == 201, response.text
    job = _completed(onprem, clock, response.json()["id"])
    assert job["media_type"] == "image"
    assert job["sources"] == ["/mnt/media/news/clip.jpg"]
    # The same bytes uploaded to a cloud emulator give the same results: facts come from the content.
    uploaded = api.create_job([api.upload(JPEG, "x.jpg")["url"]], MODULES)
    clock.advance(PROCESSING_TIME)
    assert _items(api.get(f"/jobs/{uploaded['id']}/").json()) == _items(job)


def test_longest_prefix_wins(onprem: Api, clock: SteppedClock) -> None:
    nested = _completed(onprem, clock, _create(onprem, "/mnt/media/deep/clip.jpg").json()["id"])
    plain = _completed(onprem, clock, _create(onprem, "/mnt/media/news/clip.jpg").json()["id"])
    assert _items(nested) != _items(plain)  # read from the "deep" share, which holds other bytes


@pytest.mark.parametrize(
    "source",
    ["\\\\nas\\share\\Sport\\goal.jpg", "\\\\NAS\\Share\\Sport\\goal.jpg", "//nas/share/Sport/goal.jpg"],
)
def test_unc_paths_match_the_prefix_in_any_case_and_separator(onprem: Api, source: str) -> None:
    """Server and share names are case-insensitive on Windows; the rest is looked up as given on the local disk."""
    response = _create(onprem, source)
    assert response.status_code == 201, response.text
    assert response.json()["media_type"] == "image"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("/srv/elsewhere/clip.jpg", "outside every share"),
        ("/mnt/mediaX/clip.jpg", "outside every share"),
        ("/mnt/media/news/missing.jpg", "no such file"),
        ("/mnt/media/news", "not a regular file"),
        ("/mnt/media", "folder"),
        ("/mnt/media/../outside/secret.jpg", "'..'"),
        ("/mnt/media/news/../../outside/secret.jpg", "'..'"),
        ("\\\\nas\\share\\..\\outside\\secret.jpg", "'..'"),
        ("\\\\other\\share\\Sport\\goal.jpg", "outside every share"),
        ("C:\\media\\clip.jpg", "outside every share"),
        ("file:///mnt/media/news/clip.jpg", "file: URLs are not supported"),
    ],
)
def test_paths_the_server_cannot_read_are_400(
    onprem: Api, shares: dict[str, Path], source: str, reason: str
) -> None:
    response = _create(onprem, source)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert reason in detail
    assert str(shares["media"].parent) not in detail  # never reveals where the emulator keeps the files


def test_symlink_leading_out_of_the_share_is_refused(onprem: Api, shares: dict[str, Path]) -> None:
    (shares["media"] / "news" / "link.jpg").symlink_to(shares["outside"] / "secret.jpg")
    response = _create(onprem, "/mnt/media/news/link.jpg")
    assert response.status_code == 400
    assert "leads outside the share" in response.json()["detail"]


def test_unreadable_file_is_refused(tmp_path: Path, shares: dict[str, Path]) -> None:
    """A mode-000 file, judged by an emulator process the kernel holds to file modes (as root: without the
    capabilities that let root read anything)."""
    target = shares["media"] / "news" / "clip.jpg"
    target.chmod(0)
    key_file = tmp_path / "emulator-key"
    key_file.write_text("onprem-key-1234")
    process = subprocess.Popen(
        held_to_file_modes([sys.executable, "-m", "deepva_watch.emulator", "--port", "0", "--data-dir",
                            str(tmp_path / "data"), "--key-file", str(key_file), "--onprem-root",
                            f"/mnt/media={shares['media']}"]),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        base = re.search(r"(http://\S+/api/v1)", process.stdout.readline()).group(1)  # type: ignore[union-attr]
        response = requests.post(f"{base}/jobs/", headers={"Authorization": "Key onprem-key-1234"}, timeout=10,
                                 json={"sources": ["/mnt/media/news/clip.jpg"], "modules": MODULES})
    finally:
        process.terminate()
        process.wait(10)
        target.chmod(0o644)
    assert response.status_code == 400
    assert "permission denied" in response.json()["detail"]


def test_without_onprem_roots_local_paths_stay_refused(api: Api, shares: dict[str, Path]) -> None:
    response = api.post("/jobs/", json={"sources": [str(shares["media"] / "news" / "clip.jpg")], "modules": MODULES})
    assert response.status_code == 400
    assert "only accepted on on-prem installs" in response.json()["detail"]


def test_a_root_that_is_not_an_absolute_path_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an absolute"):
        EmulatorConfig(onprem_roots={"media": tmp_path})
