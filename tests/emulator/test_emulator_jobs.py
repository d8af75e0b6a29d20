"""Creating, listing, deleting jobs and following their lifecycle under a stepped clock."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from deepva_watch.emulator import Emulator

from .conftest import PROCESSING_TIME, Api, SteppedClock

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$")
JOB_FIELDS = {
    "id", "tag", "state", "progress", "duration", "time_created", "time_started", "time_completed",
    "sources", "modules", "result", "errors", "media_type", "ttl",
}  # fmt: skip


@pytest.fixture
def image_url(api: Api) -> str:
    return str(api.upload(JPEG, "photo.jpg")["url"])


# -- validation -----------------------------------------------------------------------------------------------------


def _post_raw(api: Api, body: bytes) -> Any:
    return api.post("/jobs/", data=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("body", [b"", b"not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"null"])
def test_body_that_is_not_a_json_object_is_400(api: Api, body: bytes) -> None:
    response = _post_raw(api, body)
    assert response.status_code == 400
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"modules": {"face_recognition": {}}}, "sources"),
        ({"sources": [], "modules": {"face_recognition": {}}}, "sources"),
        ({"sources": "https://example.test/a.jpg", "modules": {"face_recognition": {}}}, "sources"),
        ({"sources": [42], "modules": {"face_recognition": {}}}, "sources"),
        ({"sources": [""], "modules": {"face_recognition": {}}}, "sources"),
        ({"sources": ["ftp://example.test/a.jpg"], "modules": {"face_recognition": {}}}, "unsupported source"),
        ({"sources": ["example.test/a.jpg"], "modules": {"face_recognition": {}}}, "unsupported source"),
        ({"sources": ["storage://AAAAAAAAAAAAAAAAAAAA"], "modules": {"face_recognition": {}}}, "unknown storage URL"),
        ({"sources": ["/media/x.mp4"], "modules": {"face_recognition": {}}}, "only accepted on on-prem installs"),
        ({"sources": ["C:\\media\\x.mp4"], "modules": {"face_recognition": {}}}, "only accepted on on-prem installs"),
        (
            {"sources": ["file:///media/x.mp4"], "modules": {"face_recognition": {}}},
            "only accepted on on-prem installs",
        ),
        ({"sources": ["https://example.test/a.jpg"]}, "modules"),
        ({"sources": ["https://example.test/a.jpg"], "modules": {}}, "modules"),
        ({"sources": ["https://example.test/a.jpg"], "modules": ["face_recognition"]}, "modules"),
        (
            {"sources": ["https://example.test/a.jpg"], "modules": {"face_recognition": "celebrities"}},
            "modules.face_recognition",
        ),
        ({"sources": ["https://example.test/a.jpg"], "modules": {"face_recognition": {}}, "tag": 5}, "tag"),
        ({"sources": ["https://example.test/a.jpg"], "modules": {"face_recognition": {}}, "webhook": "x"}, "webhook"),
    ],
)
def test_invalid_job_request_is_400_and_says_why(api: Api, body: dict[str, Any], complaint: str) -> None:
    response = api.post("/jobs/", json=body)
    assert response.status_code == 400
    payload = response.json()
    assert complaint in payload["detail"]
    assert any(complaint in error for error in payload["errors"])
    assert api.emulator.stats()["jobs_created"] == 0


def test_all_problems_are_reported_together(api: Api) -> None:
    response = api.post("/jobs/", json={"sources": [], "modules": {}, "tag": 1})
    assert response.status_code == 400
    assert len(response.json()["errors"]) == 3


def test_every_bad_source_is_named(api: Api, image_url: str) -> None:
    response = api.post(
        "/jobs/", json={"sources": [image_url, "/a", "storage://nope"], "modules": {"face_recognition": {}}}
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert len(errors) == 2
    assert "/a" in errors[0] and "storage://nope" in errors[1]


def test_url_sources_and_unknown_modules_are_accepted(api: Api, clock: SteppedClock) -> None:
    job = api.create_job(
        ["https://example.test/clip.mp4", "http://example.test/photo.PNG"], {"brand_new_module": {"x": 1}}
    )
    assert job["media_type"] == "video"
    clock.advance(PROCESSING_TIME)
    done = api.get(f"/jobs/{job['id']}/").json()
    assert done["state"] == "completed"
    assert [entry["items"] for entry in done["result"]["summary"]] == [[], []]
    assert [entry["media_type"] for entry in done["result"]["summary"]] == ["video", "image"]
    assert api.get(f"/jobs/{job['id']}/detailed-results/").json()["total"] == 0


# -- creation and lifecycle -------------------------------------------------------------------------------------------


def test_created_job_has_the_documented_shape(api: Api, emulator: Emulator, image_url: str) -> None:
    modules = {"face_recognition": {"model": "celebrities"}}
    response = api.post("/jobs/", json={"sources": [image_url], "modules": modules, "tag": "asset-1"})
    assert response.status_code == 201
    job = response.json()
    assert set(job) == JOB_FIELDS
    assert uuid.UUID(job["id"]).version == 4
    assert job["tag"] == "asset-1"
    assert (job["state"], job["progress"], job["duration"]) == ("waiting", 0.0, 0)
    assert TIMESTAMP.match(job["time_created"])
    assert job["time_created"] == "2023-11-14 22:13:20.000000"  # the stepped clock's start, in UTC
    assert job["time_started"] is None and job["time_completed"] is None
    assert job["sources"] == [image_url]
    assert job["modules"] == modules
    assert job["result"] == {"detailed_link": f"{emulator.base_url}/jobs/{job['id']}/detailed-results", "summary": []}
    assert (job["errors"], job["media_type"], job["ttl"]) == ([], "image", None)


def test_missing_tag_becomes_empty_and_webhook_is_echoed(api: Api, image_url: str) -> None:
    webhook = {"events": ["job.face_recognition.on_completed"], "callback": "https://hooks.example.test/x"}
    job = api.post(
        "/jobs/", json={"sources": [image_url], "modules": {"face_recognition": {}}, "webhook": webhook}
    ).json()
    assert job["tag"] == ""
    assert job["webhook"] == webhook


def test_lifecycle_follows_the_clock(api: Api, clock: SteppedClock, image_url: str) -> None:
    job_id = api.create_job([image_url])["id"]
    path = f"/jobs/{job_id}/"

    waiting = api.get(path).json()
    assert (waiting["state"], waiting["progress"], waiting["time_started"]) == ("waiting", 0.0, None)
    assert api.get(path + "detailed-results/").json()["data"] == []

    clock.advance(PROCESSING_TIME / 4)
    processing = api.get(path).json()
    assert processing["state"] == "processing"
    assert processing["progress"] == pytest.approx(0.25)
    assert processing["time_started"] == "2023-11-14 22:13:20.000000"
    assert processing["time_completed"] is None
    assert processing["result"]["summary"] == []
    assert api.get(path + "detailed-results/").json()["total"] == 0

    clock.advance(PROCESSING_TIME / 2)
    assert api.get(path).json()["progress"] == pytest.approx(0.75)

    clock.advance(PROCESSING_TIME / 4)
    completed = api.get(path).json()
    assert (completed["state"], completed["progress"]) == ("completed", 1.0)
    assert completed["duration"] == pytest.approx(PROCESSING_TIME)
    assert completed["time_completed"] == "2023-11-14 22:13:30.000000"
    (summary,) = completed["result"]["summary"]
    assert summary["source"] == image_url and summary["media_type"] == "image" and summary["info"] == {}
    assert summary["items"] and all(item["type"] == "face" for item in summary["items"])
    assert api.get(path + "detailed-results/").json()["total"] == len(summary["items"])


def test_zero_processing_time_completes_at_once(api: Api, emulator: Emulator, image_url: str) -> None:
    emulator.set_processing_time(0)
    created = api.create_job([image_url])
    assert created["state"] == "waiting"  # the creating answer always shows the queued job
    assert api.get(f"/jobs/{created['id']}/").json()["state"] == "completed"


def test_processing_time_change_applies_to_new_jobs_only(
    api: Api, emulator: Emulator, clock: SteppedClock, image_url: str
) -> None:
    slow = api.create_job([image_url])["id"]
    emulator.set_processing_time(1)
    fast = api.create_job([image_url])["id"]
    clock.advance(1)
    assert api.get(f"/jobs/{fast}/").json()["state"] == "completed"
    assert api.get(f"/jobs/{slow}/").json()["state"] == "processing"


def test_unknown_job_is_404(api: Api) -> None:
    for path in (f"/jobs/{uuid.uuid4()}/", f"/jobs/{uuid.uuid4()}/detailed-results/", "/jobs/not-a-uuid"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json() == {"detail": "Not found."}


def test_delete_job(api: Api, image_url: str) -> None:
    job_id = api.create_job([image_url])["id"]
    response = api.delete(f"/jobs/{job_id}/")
    assert response.status_code == 204
    assert response.content == b""
    assert api.get(f"/jobs/{job_id}/").status_code == 404
    assert api.delete(f"/jobs/{job_id}").status_code == 404


# -- listing ----------------------------------------------------------------------------------------------------------


def test_list_filters_by_exact_tag_newest_first(api: Api, image_url: str) -> None:
    first = api.create_job([image_url], tag="asset-7")["id"]
    api.create_job([image_url], tag="asset-70")
    api.create_job([image_url], tag="")
    second = api.create_job([image_url], tag="asset-7")["id"]
    listing = api.get("/jobs/", params={"tag": "asset-7"}).json()
    assert listing["total"] == 2
    assert [job["id"] for job in listing["data"]] == [second, first]
    assert api.get("/jobs/", params={"tag": "missing"}).json() == {
        "total": 0, "offset": 0, "limit": 10, "next": None, "prev": None, "data": [],
    }  # fmt: skip
    assert api.get("/jobs/").json()["total"] == 4


def test_list_pagination_links_walk_every_job_once(api: Api, image_url: str) -> None:
    created = [api.create_job([image_url], tag="page")["id"] for _ in range(5)]
    first = api.get("/jobs/", params={"tag": "page", "limit": 2}).json()
    assert (first["total"], first["offset"], first["limit"], first["prev"]) == (5, 0, 2, None)
    assert first["next"].startswith(api.emulator.base_url + "/jobs/?")
    assert "tag=page" in first["next"]
    seen, page = [], first
    while True:
        seen += [job["id"] for job in page["data"]]
        if page["next"] is None:
            break
        page = api.session.get(page["next"]).json()
    assert seen == list(reversed(created))
    assert page["offset"] == 4 and page["prev"] is not None
    back = api.session.get(page["prev"]).json()
    assert back["offset"] == 2


def test_offset_beyond_the_end_gives_an_empty_page(api: Api, image_url: str) -> None:
    api.create_job([image_url])
    page = api.get("/jobs/", params={"offset": 5}).json()
    assert page["data"] == [] and page["next"] is None and page["prev"] is not None


@pytest.mark.parametrize("params", [{"offset": "-1"}, {"limit": "0"}, {"limit": "ten"}, {"offset": "1.5"}])
def test_bad_pagination_is_400(api: Api, params: dict[str, str]) -> None:
    assert api.get("/jobs/", params=params).status_code == 400


def test_python_api_lists_jobs_as_the_http_api_shows_them(api: Api, emulator: Emulator, image_url: str) -> None:
    job_id = api.create_job([image_url], tag="py")["id"]
    (job,) = emulator.jobs()
    assert job == api.get(f"/jobs/{job_id}/").json()


def test_peak_active_jobs_counts_jobs_not_yet_completed(
    api: Api, emulator: Emulator, clock: SteppedClock, image_url: str
) -> None:
    for _ in range(3):
        api.create_job([image_url])
    assert emulator.stats()["peak_active_jobs"] == 3
    clock.advance(PROCESSING_TIME)
    api.create_job([image_url])
    stats = emulator.stats()
    assert stats["peak_active_jobs"] == 3
    assert stats["jobs_created"] == 4
    assert stats["requests"]["POST /api/v1/jobs/"] == 4
