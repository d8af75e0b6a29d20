"""Uploads to ``/storage/``: multipart streamed to disk, with Content-Length or chunked bodies, and the object API."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from deepva_watch.emulator import Emulator

from .conftest import API_KEY, Api, wait_until

JPEG = b"\xff\xd8\xff\xe0" + b"jpeg body" * 100
PNG = b"\x89PNG\r\n\x1a\n" + b"png body" * 100
STORAGE_FIELDS = {"id", "url", "file_size", "name", "is_folder", "uploaded", "is_image", "upload_failed"}


def _stored_files(data_dir: Path) -> list[Path]:
    return sorted(path for path in (data_dir / "storage").iterdir())


def test_upload_answers_with_the_documented_object(api: Api, data_dir: Path) -> None:
    response = api.session.post(api.url("/storage/"), files={"file": ("photo.jpg", JPEG)}, data={"folder": "/"})
    assert response.status_code == 201
    stored = response.json()
    assert set(stored) == STORAGE_FIELDS
    assert isinstance(stored["id"], int)
    assert stored["url"].startswith("storage://")
    key = stored["url"].removeprefix("storage://")
    assert len(key) == 20 and key.isalnum()
    assert stored == {
        "id": stored["id"], "url": stored["url"], "file_size": len(JPEG), "name": "photo.jpg", "is_folder": False,
        "uploaded": True, "is_image": True, "upload_failed": False,
    }  # fmt: skip
    (on_disk,) = _stored_files(data_dir)
    assert on_disk.read_bytes() == JPEG
    assert "photo" not in on_disk.name  # client names never become paths


@pytest.mark.parametrize(
    ("content", "is_image"),
    [(JPEG, True), (PNG, True), (b"\x00\x00\x00\x18ftypmp42" + b"\0" * 64, False), (b"", False), (b"\xff\xd8", False)],
)
def test_image_or_video_is_decided_by_magic_bytes(api: Api, content: bytes, is_image: bool) -> None:
    assert api.upload(content, name="misleading.jpg")["is_image"] is is_image


def test_file_name_keeps_only_the_last_path_component_and_unicode(api: Api) -> None:
    assert api.upload(JPEG, name="C:\\Users\\me\\Zoë Åberg.jpg")["name"] == "Zoë Åberg.jpg"
    assert api.upload(JPEG, name="../../etc/passwd")["name"] == "passwd"


def test_upload_without_file_is_400(api: Api, data_dir: Path) -> None:
    response = api.post("/storage/", files={"other": ("x.jpg", JPEG)}, data={"folder": "/"})
    assert response.status_code == 400
    assert "file" in response.json()["detail"]
    assert _stored_files(data_dir) == []
    assert list((data_dir / "incoming").iterdir()) == []


@pytest.mark.parametrize(
    "content_type", ["application/json", "multipart/form-data", "multipart/form-data; boundary=" + "x" * 71]
)
def test_upload_that_is_not_multipart_is_400(api: Api, content_type: str) -> None:
    response = api.post("/storage/", data=b"{}", headers={"Content-Type": content_type})
    assert response.status_code == 400


def test_truncated_multipart_is_400_and_leaves_nothing_behind(api: Api, data_dir: Path) -> None:
    body = b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\nhalf a file'
    response = api.post("/storage/", data=body, headers={"Content-Type": "multipart/form-data; boundary=b0undary"})
    assert response.status_code == 400
    assert _stored_files(data_dir) == []
    assert list((data_dir / "incoming").iterdir()) == []
    assert api.emulator.stats()["active_uploads"] == 0


def test_fifty_megabyte_upload_is_stored_byte_for_byte(api: Api, emulator: Emulator, tmp_path: Path) -> None:
    source = tmp_path / "big.mxf"
    with source.open("wb") as handle:
        for _ in range(50):
            # Random blocks with CRLF and dashes in them, so delimiter look-alikes cross every read boundary.
            handle.write(os.urandom(1 << 20).replace(b"\x00", b"\r\n--"))
    with source.open("rb") as handle:
        response = api.post("/storage/", files={"file": ("big.mxf", handle)}, data={"folder": "/archive"})
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["file_size"] == source.stat().st_size
    (on_disk,) = _stored_files(emulator.data_dir)
    assert _sha256(on_disk) == _sha256(source)
    stats = emulator.stats()
    assert stats["bytes_uploaded"] == source.stat().st_size
    assert stats["uploads_completed"] == 1 and stats["storage_objects"] == 1


def _multipart(boundary: str, name: str, content: bytes, folder: str = "/") -> list[bytes]:
    return [
        f'--{boundary}\r\nContent-Disposition: form-data; name="folder"\r\n\r\n{folder}\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'.encode(),
        b"Content-Type: application/octet-stream\r\n\r\n",
        *[content[start : start + 7777] for start in range(0, len(content), 7777)],
        f"\r\n--{boundary}--\r\n".encode(),
    ]


def test_chunked_upload_is_stored_byte_for_byte(api: Api, emulator: Emulator) -> None:
    content = os.urandom(3 << 20)
    boundary = "chunky-boundary-1234"
    response = api.post(
        "/storage/",
        data=iter(_multipart(boundary, "chunked.mov", content)),  # a generator body makes requests send chunked
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 201, response.text
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.json()["file_size"] == len(content)
    (on_disk,) = _stored_files(emulator.data_dir)
    assert on_disk.read_bytes() == content
    # The connection is still in a clean state after a chunked body.
    assert api.get("/storage/").json()["total"] == 1


def test_concurrent_uploads_are_counted(api: Api, emulator: Emulator) -> None:
    """Both uploads are held open mid-body until the emulator reports them both in progress."""
    both_active = threading.Event()
    boundary = "concurrent-boundary"
    results: list[int] = []

    def body() -> Iterator[bytes]:
        pieces = _multipart(boundary, "c.mp4", os.urandom(100_000))
        yield pieces[0]
        yield pieces[1]
        assert both_active.wait(10)
        yield from pieces[2:]

    def upload() -> None:
        with requests.Session() as session:
            response = session.post(
                api.url("/storage/"),
                data=body(),
                headers={
                    "Authorization": f"Key {API_KEY}",
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                },
                timeout=20,
            )
            results.append(response.status_code)

    threads = [threading.Thread(target=upload) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_until(lambda: emulator.stats()["active_uploads"] == 2)
    both_active.set()
    for thread in threads:
        thread.join(20)
    assert results == [201, 201]
    stats = emulator.stats()
    assert stats["peak_concurrent_uploads"] == 2
    assert stats["active_uploads"] == 0


def test_list_get_and_delete_storage_objects(api: Api, emulator: Emulator) -> None:
    root = api.upload(JPEG, "a.jpg", folder="/")
    news = api.upload(PNG, "b.png", folder="news")
    also_news = api.upload(JPEG, "c.jpg", folder="/news/")

    everything = api.get("/storage/").json()
    assert everything["total"] == 3
    assert [item["id"] for item in everything["data"]] == [root["id"], news["id"], also_news["id"]]
    assert [item["id"] for item in api.get("/storage/", params={"folder": "/"}).json()["data"]] == [root["id"]]
    in_news = api.get("/storage/", params={"folder": "/news/", "limit": 1}).json()
    assert (in_news["total"], in_news["data"][0]["id"]) == (2, news["id"])
    assert "folder=%2Fnews%2F" in in_news["next"]

    assert api.get(f"/storage/{news['id']}/").json() == news
    assert api.get("/storage/999/").status_code == 404
    assert api.get("/storage/not-a-number/").status_code == 404

    assert api.delete(f"/storage/{news['id']}/").status_code == 204
    assert api.get(f"/storage/{news['id']}").status_code == 404
    assert api.delete(f"/storage/{news['id']}/").status_code == 404
    assert len(_stored_files(emulator.data_dir)) == 2
    assert emulator.stats()["storage_objects"] == 2


def test_deleted_storage_object_is_no_longer_a_valid_source(api: Api) -> None:
    stored = api.upload(JPEG, "a.jpg")
    api.delete(f"/storage/{stored['id']}/")
    response = api.post("/jobs/", json={"sources": [stored["url"]], "modules": {"face_recognition": {}}})
    assert response.status_code == 400
    assert "unknown storage URL" in response.json()["detail"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def test_client_hanging_up_mid_upload_leaves_nothing_behind(
    api: Api, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    head = (
        b"--cut\r\n"
        b'Content-Disposition: form-data; name="file"; filename="cut.mp4"\r\n\r\n' + b"partial body" * 1000
    )  # fmt: skip
    request = (
        b"POST /api/v1/storage/ HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\n"
        + f"Authorization: Key {API_KEY}\r\n".encode()
        + b"Content-Type: multipart/form-data; boundary=cut\r\n"
        + b"Content-Length: 10000000\r\n\r\n"
        + head
    )  # fmt: skip
    with socket.create_connection(("127.0.0.1", emulator.port)) as connection:
        connection.sendall(request)
        wait_until(lambda: emulator.stats()["active_uploads"] == 1)
    wait_until(lambda: emulator.stats()["active_uploads"] == 0)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert list((emulator.data_dir / "incoming").iterdir()) == []
    assert _stored_files(emulator.data_dir) == []
    assert api.get("/storage/").json()["total"] == 0
