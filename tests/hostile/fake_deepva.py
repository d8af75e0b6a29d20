"""A small DeepVA stand-in whose answers a test writes byte for byte, for the cases the emulator will not produce.

The emulator answers like DeepVA; these tests need a server that answers like an attacker or a broken proxy: markup in
labels, ``../`` in every field, a 50 MB summary, JSON nested 100 000 deep, invalid UTF-8, wrong types. Uploads are read
and discarded (a 20 GB sparse file costs no disk), jobs complete at once, and each job's answers come from the
*scenario* named by the uploaded file's name (``<scenario>--anything.jpg``), so one daemon run covers many cases.

A scenario is a function ``(job_id, tag, source) -> Answers``; every answer is raw bytes, so nothing is cleaned up on
the way. Optionally TLS (``ssl_context``) and a key echo (every error body repeats the Authorization header).
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

PREFIX = "/api/v1"


@dataclass(frozen=True)
class Answers:
    """What the server sends for one job: the body of ``GET /jobs/{id}/`` and of its detailed results."""

    job: bytes
    detailed: bytes = b'{"total": 0, "offset": 0, "limit": 100, "next": null, "prev": null, "data": []}'
    status: int = 200
    """The status of ``GET /jobs/{id}/`` (the detailed results always answer 200)."""


def plain_job(job_id: str, tag: str, source: str, **overrides: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "id": job_id, "tag": tag, "state": "completed", "progress": 1.0, "duration": 1,
        "time_created": "2024-01-02 03:04:05.000001", "time_started": None, "time_completed": None,
        "sources": [source], "modules": {"face_recognition": {"model": "celebrities"}},
        "result": {"detailed_link": "", "summary": [
            {"source": source, "media_type": "image", "items": [{"type": "object", "label": "tree"}]}]},
    }
    job.update(overrides)
    return job


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()


Scenario = Callable[[str, str, str], Answers]


def _default(job_id: str, tag: str, source: str) -> Answers:
    return Answers(as_json(plain_job(job_id, tag, source)))


@dataclass
class FakeJob:
    id: str
    tag: str
    source: str
    scenario: str


@dataclass
class FakeDeepVA:
    api_key: str
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    echo_key_in_errors: bool = False
    ssl_context: ssl.SSLContext | None = None
    on_upload_chunk: Callable[[int], None] | None = None

    def __post_init__(self) -> None:
        self.jobs: dict[str, FakeJob] = {}
        self.uploads: list[tuple[str, int]] = []
        self.requests: list[tuple[str, str]] = []
        self._storage_names: dict[str, str] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:
                fake._serve(self)

            do_POST = do_DELETE = do_GET

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        if self.ssl_context is not None:
            self._httpd.socket = self.ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}{PREFIX}"

    def start(self) -> FakeDeepVA:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- routing --------------------------------------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path
        with self._lock:
            self.requests.append((handler.command, path))
        if handler.headers.get("Authorization") != f"Key {self.api_key}":
            self._drain(handler)
            return self._reply(handler, 401, self._error_body(handler, "Invalid key."))
        route = path[len(PREFIX):] if path.startswith(PREFIX) else path
        parts = [unquote(part) for part in route.strip("/").split("/")]
        if handler.command == "POST" and parts == ["storage"]:
            return self._upload(handler)
        body = self._drain(handler)
        if handler.command == "POST" and parts == ["jobs"]:
            return self._create_job(handler, body)
        if handler.command == "GET" and parts == ["jobs"]:
            return self._reply(handler, 200, as_json({"total": 0, "offset": 0, "limit": 100, "next": None,
                                                      "prev": None, "data": []}))
        if handler.command == "GET" and len(parts) >= 2 and parts[0] == "jobs":
            job = self.jobs.get(parts[1])
            if job is None:
                return self._reply(handler, 404, self._error_body(handler, "Not found."))
            answers = self.scenarios.get(job.scenario, _default)(job.id, job.tag, job.source)
            if parts[2:] == ["detailed-results"]:
                return self._reply(handler, 200, answers.detailed)
            return self._reply(handler, answers.status, answers.job)
        if handler.command == "DELETE":
            return self._reply(handler, 204, b"")
        return self._reply(handler, 404, self._error_body(handler, "Not found."))

    def _upload(self, handler: BaseHTTPRequestHandler) -> None:
        """Reads the multipart body and keeps only its first KiB (where the file name is); the rest is discarded."""
        remaining = int(handler.headers.get("Content-Length") or 0)
        total = remaining
        head = b""
        buffer = bytearray(1 << 20)
        view = memoryview(buffer)
        while remaining:
            count = handler.rfile.readinto(view[: min(remaining, len(buffer))])  # type: ignore[attr-defined]
            if not count:
                break
            if len(head) < 4096:
                head += bytes(view[: min(count, 4096 - len(head))])
            remaining -= count
            if self.on_upload_chunk is not None:
                self.on_upload_chunk(total - remaining)
        name = ""
        marker = b'filename="'
        start = head.find(marker)
        if start != -1:
            end = head.find(b'"\r\n', start + len(marker))
            name = head[start + len(marker): end].decode("utf-8", "replace")
        with self._lock:
            number = len(self.uploads) + 1
            self.uploads.append((name, total))
            url = f"storage://fake{number}"
            self._storage_names[url] = name
        self._reply(handler, 201, as_json({"id": number, "url": url, "file_size": total, "name": name,
                                           "is_folder": False, "uploaded": True, "upload_failed": False}))

    def _create_job(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        payload = json.loads(body)
        source = payload["sources"][0]
        name = self._storage_names.get(source, "")
        # storage names are "<asset id>_<file name>"; the scenario is the part of the file name before "--"
        file_name = name.split("_", 1)[-1]
        scenario = file_name.split("--", 1)[0] if "--" in file_name else ""
        with self._lock:
            job_id = f"job-{len(self.jobs) + 1}"
            self.jobs[job_id] = FakeJob(job_id, payload.get("tag", ""), source, scenario)
        self._reply(handler, 201, as_json(plain_job(job_id, payload.get("tag", ""), source, state="waiting",
                                                     progress=0.0)))

    # -- plumbing -------------------------------------------------------------------------------------------------

    def _error_body(self, handler: BaseHTTPRequestHandler, detail: str) -> bytes:
        if self.echo_key_in_errors:
            detail += f" You sent: {handler.headers.get('Authorization')}"
        return as_json({"detail": detail})

    @staticmethod
    def _drain(handler: BaseHTTPRequestHandler) -> bytes:
        length = int(handler.headers.get("Content-Length") or 0)
        return handler.rfile.read(length) if length else b""

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            handler.close_connection = True
