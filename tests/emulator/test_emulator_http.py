"""Authentication, routing and protocol behaviour that every endpoint shares."""

from __future__ import annotations

import pytest
import requests

from deepva_watch.emulator import Emulator

from .conftest import API_KEY, Api


def test_request_without_key_is_refused(anonymous: Api) -> None:
    response = anonymous.get("/jobs/")
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}


@pytest.mark.parametrize("header", [f"Key wrong-{API_KEY}", "Key ", f"Bearer {API_KEY}", API_KEY])
def test_request_with_wrong_key_or_scheme_is_refused(anonymous: Api, header: str) -> None:
    response = anonymous.get("/jobs/", headers={"Authorization": header})
    assert response.status_code == 401
    assert "detail" in response.json()
    assert API_KEY not in response.text


def test_scheme_is_case_insensitive(anonymous: Api) -> None:
    assert anonymous.get("/jobs/", headers={"Authorization": f"key {API_KEY}"}).status_code == 200


def test_unknown_api_path_needs_a_key_then_is_not_found(anonymous: Api, api: Api) -> None:
    assert anonymous.get("/nothing-here/").status_code == 401
    response = api.get("/nothing-here/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_path_outside_the_api_is_not_found_without_a_key(anonymous: Api, emulator: Emulator) -> None:
    assert anonymous.session.get(emulator.origin + "/favicon.ico").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/jobs/", "GET, POST"),
        ("POST", "/jobs/0c6a6e2c-0000-4000-8000-000000000000/", "DELETE, GET"),
        ("DELETE", "/jobs/x/detailed-results/", "GET"),
        ("PATCH", "/storage/", "GET, POST"),
        ("POST", "/storage/1/", "DELETE, GET"),
    ],
)
def test_wrong_method_on_known_path_is_405(api: Api, method: str, path: str, allowed: str) -> None:
    response = api.session.request(method, api.url(path))
    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert "detail" in response.json()


@pytest.mark.parametrize("path", ["/jobs", "/jobs/", "/storage", "/storage/"])
def test_trailing_slash_is_optional(api: Api, path: str) -> None:
    assert api.get(path).status_code == 200


def test_every_response_says_it_comes_from_the_emulator(api: Api, anonymous: Api) -> None:
    for response in (api.get("/jobs/"), anonymous.get("/jobs/"), api.get("/missing")):
        assert response.headers["Server"] == "deepva-emulator/0.1"
        assert response.headers["Content-Type"] == "application/json"


def test_stats_endpoint_needs_no_key_and_matches_python_api(emulator: Emulator, api: Api) -> None:
    api.get("/jobs/")
    api.get("/jobs/")
    api.get("/jobs/abc/")
    api.post("/jobs/", json={})
    api.session.put(api.url("/jobs/"))
    api.get("/missing")
    response = requests.get(emulator.origin + "/_emulator/stats")
    assert response.status_code == 200
    stats = response.json()
    assert stats == emulator.stats()
    assert stats["requests"] == {
        "GET /api/v1/jobs/": 2,
        "GET /api/v1/jobs/{id}/": 1,
        "POST /api/v1/jobs/": 1,
        "PUT /api/v1/jobs/": 1,
        "GET (unmatched)": 1,
    }
    assert stats["jobs_created"] == 0
    assert stats["storage_objects"] == 0
    assert stats["bytes_uploaded"] == 0


def test_refused_upload_is_drained_so_the_connection_stays_usable(anonymous: Api) -> None:
    """A 401 on a large body must reach the client as a 401, and the kept-alive connection must still work."""
    payload = b"x" * (8 << 20)
    response = anonymous.post("/storage/", files={"file": ("big.bin", payload)})
    assert response.status_code == 401
    second = anonymous.get("/jobs/", headers={"Authorization": f"Key {API_KEY}"})
    assert second.status_code == 200


def test_stop_closes_kept_alive_connections(emulator: Emulator) -> None:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Key {API_KEY}"
        base = emulator.base_url
        assert session.get(base + "/jobs/").status_code == 200
        emulator.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(base + "/jobs/", timeout=5)
