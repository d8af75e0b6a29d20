"""Fixtures for the emulator's own tests: a stepped clock, a running emulator and an authenticated session."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from deepva_watch.emulator import Emulator, EmulatorConfig
from tests import testvideo
from tests.conftest import require_program

API_KEY = "test-key-0123"
START = 1_700_000_000.0
PROCESSING_TIME = 10.0


class SteppedClock:
    """Stands still until a test moves it, so lifecycle assertions never depend on timing."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Api:
    """A thin requests wrapper: paths are relative to ``/api/v1``."""

    emulator: Emulator
    session: requests.Session

    def url(self, path: str) -> str:
        return self.emulator.base_url + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url(path), **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.url(path), **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.delete(self.url(path), **kwargs)

    def upload(self, content: bytes, name: str = "clip.mp4", folder: str = "/") -> dict[str, Any]:
        response = self.post("/storage/", files={"file": (name, content)}, data={"folder": folder})
        assert response.status_code == 201, response.text
        return response.json()

    def create_job(self, sources: list[str], modules: dict[str, Any] | None = None, tag: str = "") -> dict[str, Any]:
        body = {"sources": sources, "modules": modules or {"face_recognition": {}}, "tag": tag}
        response = self.post("/jobs/", json=body)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "emulator-data"


@pytest.fixture
def emulator(clock: SteppedClock, data_dir: Path) -> Iterator[Emulator]:
    config = EmulatorConfig(data_dir=data_dir, api_key=API_KEY, processing_time=PROCESSING_TIME, clock=clock)
    with Emulator(config) as running:
        yield running


@pytest.fixture
def api(emulator: Emulator) -> Iterator[Api]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Key {API_KEY}"
        yield Api(emulator, session)


@pytest.fixture
def anonymous(emulator: Emulator) -> Iterator[Api]:
    with requests.Session() as session:
        yield Api(emulator, session)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """For what happens on the server's own threads, where no clock can be injected: poll with a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within the deadline")
        time.sleep(0.005)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class LoopbackSite:
    """A tiny stdlib HTTP server on loopback: serves files from ``root`` and records every POST it receives.

    It stands in for a site that publishes media over HTTP and for a webhook receiver. ``post_status`` is what POSTs
    are answered with.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.received: list[Received] = []
        self.post_status = 200
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                target = site.root / self.path.lstrip("/").split("?")[0]
                if not target.is_file():
                    self.send_error(404)
                    return
                data = target.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                site.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(site.post_status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[LoopbackSite]:
    root = tmp_path / "site"
    root.mkdir()
    running = LoopbackSite(root)
    yield running
    running.close()


def session_with_key(key: str = API_KEY) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Key {key}"
    return session


def make_test_video(path: Path, *, size: str, rate: int, seconds: int) -> Path:
    require_program("ffmpeg")
    return testvideo.make_test_video(path, size=size, rate=rate, seconds=seconds)
