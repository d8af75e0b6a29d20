"""A scriptable HTTP server on a random loopback port, for testing the DeepVA client against real sockets.

Each test queues the replies a route should give; the server records every request it receives so tests can count
retries and inspect what was sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_KEY = "test-key-5f0c2a9e7d41b3"
API_PREFIX = "/api/v1"


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = b"{}"
    """bytes or str are sent as they are; anything else is sent as JSON."""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (to provoke client read timeouts)."""
    drop: bool = False
    """Close the connection without answering, after reading the request."""
    cut_short: bool = False
    """Promise more body than is sent, then close the connection (an answer cut off mid-way)."""


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    body_length: int


Responder = Callable[[Received], Reply]


class ScriptedServer:
    """Routes are ``(method, path)`` below ``/api/v1``; each holds a queue of replies, the last one repeating."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._routes: dict[tuple[str, str], list[Reply] | Responder] = {}
        self._lock = threading.Lock()
        self.keep_bodies = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                server._serve(self)

            do_GET = do_POST = do_DELETE = do_PUT = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{API_PREFIX}"

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def script(self, method: str, path: str, *replies: Reply) -> None:
        with self._lock:
            self._routes[(method, path)] = list(replies)

    def respond(self, method: str, path: str, responder: Responder) -> None:
        with self._lock:
            self._routes[(method, path)] = responder

    def requests_to(self, method: str, path: str) -> list[Received]:
        return [r for r in self.received if r.method == method and r.path == path]

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        path = parts.path[len(API_PREFIX):] if parts.path.startswith(API_PREFIX) else parts.path
        body, length = self._read_body(handler)
        received = Received(
            method=handler.command,
            path=path,
            query=parse_qs(parts.query),
            headers={key.lower(): value for key, value in handler.headers.items()},
            body=body,
            body_length=length,
        )
        with self._lock:
            self.received.append(received)
            route = self._routes.get((handler.command, path))
            if route is None:
                reply = Reply(404, {"detail": "Not found."})
            elif callable(route):
                reply = None
            else:
                reply = route.pop(0) if len(route) > 1 else route[0]
        if reply is None:
            reply = route(received)  # type: ignore[operator]
        if reply.delay:
            time.sleep(reply.delay)
        if reply.drop:
            handler.close_connection = True
            return
        payload = reply.body if isinstance(reply.body, bytes) else (
            reply.body.encode() if isinstance(reply.body, str) else json.dumps(reply.body).encode()
        )
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload) + (1000 if reply.cut_short else 0)))
            for key, value in reply.headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(payload)
            if reply.cut_short:
                handler.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    def _read_body(self, handler: BaseHTTPRequestHandler) -> tuple[bytes, int]:
        remaining = int(handler.headers.get("Content-Length") or 0)
        total = remaining
        kept = bytearray()
        buffer = bytearray(1024 * 1024)
        view = memoryview(buffer)
        while remaining:
            count = handler.rfile.readinto(view[: min(remaining, len(buffer))])  # type: ignore[attr-defined]
            if not count:
                break
            if self.keep_bodies:
                kept += view[:count]
            remaining -= count
        return bytes(kept), total - remaining


class RecordingSleep:
    """Stands in for ``time.sleep``: records the delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def job_json(job_id: str = "job-1", *, tag: str = "", state: str = "waiting") -> dict[str, Any]:
    return {
        "id": job_id,
        "tag": tag,
        "state": state,
        "progress": 0.0,
        "duration": 0,
        "time_created": "2019-08-12 08:14:28.430144",
        "time_started": None,
        "time_completed": None,
        "sources": ["storage://abc"],
        "modules": {"face_recognition": {"model": "celebrities"}},
        "result": {"detailed_link": f"https://api.deepva.com/v1/jobs/{job_id}/detailed-results", "summary": []},
    }


def storage_json(storage_id: int = 594, *, upload_failed: bool = False) -> dict[str, Any]:
    return {
        "id": storage_id,
        "url": "storage://q1gyaldQ146pAagevHIK",
        "file_size": None,
        "name": "test1.jpg",
        "is_folder": False,
        "uploaded": False,
        "is_image": True,
        "upload_failed": upload_failed,
    }
