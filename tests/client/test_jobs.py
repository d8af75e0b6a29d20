"""Job calls: typed values out, pagination followed from the configured base URL, tags matched exactly."""

from __future__ import annotations

from typing import Any

import pytest
from deepva_scripted_server import Received, Reply, job_json, storage_json

from deepva_watch.deepva import Job, JobPage, MalformedResponse, NotFound


def _paged(items: list[Any], *, next_base: str = "https://api.deepva.com/v1") -> Any:
    """A responder paginating ``items`` like DeepVA, with ``next`` links that (as documented) lack ``/api``."""

    def respond(request: Received) -> Reply:
        offset = int(request.query.get("offset", ["0"])[0])
        limit = int(request.query.get("limit", ["10"])[0])
        page = items[offset: offset + limit]
        more = offset + limit < len(items)
        return Reply(200, {
            "total": len(items),
            "offset": offset,
            "limit": limit,
            "next": f"{next_base}{request.path}?offset={offset + limit}&limit={limit}" if more else None,
            "prev": None,
            "data": page,
        })

    return respond


def _segment(index: int) -> dict[str, Any]:
    return {
        "media_type": "video",
        "frame_start": index * 25,
        "frame_end": index * 25 + 24,
        "time_start": str(index),
        "time_end": index + 1,
        "tc_start": "00:00:00:00",
        "tc_end": "00:00:01:00",
        "source": "storage://abc",
        "module": "face_recognition",
        "meta": {"label": f"person {index}", "confidence": 0.9},
        "detections": [{"frame_index": index * 25, "type": "face_bbox", "data": {"x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4}}],
    }


def test_get_job_returns_a_typed_job(server, make_client):
    server.script("GET", "/jobs/6b51/", Reply(200, job_json("6b51", tag="asset-7", state="completed")))

    job = make_client().get_job("6b51")

    assert isinstance(job, Job)
    assert (job.id, job.tag, job.state, job.is_terminal) == ("6b51", "asset-7", "completed", True)
    sent = server.requests_to("GET", "/jobs/6b51/")[0]
    assert sent.headers["authorization"].startswith("Key test-key")
    assert sent.headers["accept"] == "application/json"


def test_ids_cannot_escape_their_path_segment(server, make_client):
    server.script("GET", "/jobs/a%2Fb%3Fc/", Reply(200, job_json("a/b?c")))

    assert make_client().get_job("a/b?c").id == "a/b?c"


def test_list_jobs_passes_paging_and_tag(server, make_client):
    jobs = [job_json(f"j{i}", tag="t") for i in range(25)]
    server.respond("GET", "/jobs/", _paged(jobs))

    page = make_client().list_jobs(offset=10, limit=10, tag="t")

    assert isinstance(page, JobPage)
    assert (page.total, page.offset, page.has_next) == (25, 10, True)
    assert [job.id for job in page.jobs] == [f"j{i}" for i in range(10, 20)]
    assert server.received[-1].query == {"offset": ["10"], "limit": ["10"], "tag": ["t"]}


def test_a_page_can_be_read_for_a_few_jobs_only(server, make_client):
    jobs = [job_json(f"j{i}") for i in range(10)]
    jobs[3] = "not a job"  # a job we do not ask about is not read, so its oddities cannot stop us
    server.respond("GET", "/jobs/", _paged(jobs))

    page = make_client().list_jobs(offset=0, limit=10, only={"j5", "j8", "elsewhere"})

    assert [job.id for job in page.jobs] == ["j5", "j8"]
    assert (page.listed, page.total, page.has_next) == (10, 10, False)
    with pytest.raises(MalformedResponse):
        make_client().list_jobs(offset=0, limit=10)


def test_find_jobs_by_tag_reads_every_page_and_matches_exactly(server, make_client):
    jobs = [job_json(f"j{i}", tag="asset-1" if i % 2 else "asset-10") for i in range(230)]
    server.respond("GET", "/jobs/", _paged(jobs))

    found = make_client().find_jobs_by_tag("asset-1")

    assert [job.id for job in found] == [f"j{i}" for i in range(1, 230, 2)]
    assert len(server.requests_to("GET", "/jobs/")) == 3
    assert all(request.query["tag"] == ["asset-1"] for request in server.received)


def test_find_jobs_by_tag_with_no_match(server, make_client):
    server.respond("GET", "/jobs/", _paged([]))

    assert make_client().find_jobs_by_tag("nothing") == []
    assert len(server.received) == 1


def test_detailed_results_follow_pagination_lazily_from_the_base_url(server, make_client):
    segments = [_segment(i) for i in range(250)]
    server.respond("GET", "/jobs/j1/detailed-results/", _paged(segments))

    results = make_client().iter_detailed_results("j1", page_size=100)
    first = next(results)
    assert len(server.received) == 1  # nothing fetched ahead of the consumer
    rest = list(results)

    assert [segment.label for segment in [first, *rest]] == [f"person {i}" for i in range(250)]
    assert first.time_start == 0.0 and first.detections[0].box is not None
    assert [request.query["offset"] for request in server.received] == [["0"], ["100"], ["200"]]
    assert all(request.path == "/jobs/j1/detailed-results/" for request in server.received)


def test_detailed_results_stop_at_total_when_next_is_missing(server, make_client):
    def respond(request: Received) -> Reply:
        offset = int(request.query["offset"][0])
        return Reply(200, {"total": 3, "data": [_segment(i) for i in range(offset, min(offset + 2, 3))]})

    server.respond("GET", "/jobs/j1/detailed-results/", respond)

    assert len(list(make_client().iter_detailed_results("j1", page_size=2))) == 3
    assert len(server.received) == 2


def test_detailed_results_stop_on_an_empty_page(server, make_client):
    server.script("GET", "/jobs/j1/detailed-results/",
                  Reply(200, {"data": [_segment(0)], "next": "x"}), Reply(200, {"data": [], "next": "x"}))

    assert len(list(make_client().iter_detailed_results("j1"))) == 1
    assert len(server.received) == 2


def test_detailed_results_of_a_missing_job(server, make_client):
    server.script("GET", "/jobs/gone/detailed-results/", Reply(404, {"detail": "Not found."}))

    with pytest.raises(NotFound) as caught:
        list(make_client().iter_detailed_results("gone"))

    assert caught.value.url == "/jobs/gone/detailed-results/"


def test_delete_job_and_storage_treat_already_gone_as_done(server, make_client):
    server.script("DELETE", "/jobs/j1/", Reply(204, b""))
    server.script("DELETE", "/storage/594/", Reply(404, {"detail": "Not found."}))
    client = make_client()

    assert client.delete_job("j1") is None
    assert client.delete_storage("594") is None
    assert [request.method for request in server.received] == ["DELETE", "DELETE"]


def test_get_storage(server, make_client):
    server.script("GET", "/storage/594/", Reply(200, storage_json(594)))

    stored = make_client().get_storage("594")

    assert (stored.id, stored.url, stored.upload_failed) == ("594", "storage://q1gyaldQ146pAagevHIK", False)


def test_find_jobs_by_tag_stops_when_the_server_ignores_offset(server, make_client):
    stuck = {"total": 1000, "next": "more", "data": [job_json("j1", tag="t"), job_json("j2", tag="t")]}
    server.script("GET", "/jobs/", Reply(200, stuck))

    assert [job.id for job in make_client().find_jobs_by_tag("t")] == ["j1", "j2"]
    assert len(server.received) == 2


def _ignoring_offset(items: list[Any]) -> Any:
    """A misbehaving server: every page is the first one, and it always says there is more."""
    return lambda request: Reply(200, {"total": 10**9, "next": "more", "data": items})


def test_detailed_results_from_a_server_that_ignores_offset_end_after_one_repeat(server, make_client):
    server.respond("GET", "/jobs/j1/detailed-results/", _ignoring_offset([_segment(0), _segment(1)]))

    results = list(make_client().iter_detailed_results("j1", page_size=2))

    assert [segment.label for segment in results] == ["person 0", "person 1"]
    assert len(server.received) == 2, "the repeated page ends the walk"


def test_a_storage_listing_that_ignores_offset_ends_with_what_it_has(server, make_client):
    server.respond("GET", "/storage/", _ignoring_offset([storage_json(1), storage_json(2)]))

    assert sorted(stored.id for stored in make_client().list_storage("/")) == ["1", "2"]
    assert len(server.received) == 2


def test_an_answer_larger_than_the_cap_is_refused_unread(server, make_client, monkeypatch):
    from deepva_watch.deepva import client as client_module

    monkeypatch.setattr(client_module, "MAX_RESPONSE_BYTES", 4096)
    server.script("GET", "/jobs/j1/", Reply(200, b"[" + b"1," * 10_000 + b"1]"))

    with pytest.raises(MalformedResponse, match="larger than 4096 bytes"):
        make_client().get_job("j1")
