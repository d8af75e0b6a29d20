"""HTTP plumbing and routing for the emulator, on the standard library's threaded HTTP server.

One thread per connection is plenty for loopback tests and benchmarks, and keeps uploads simple blocking loops that run
at disk speed. Each request is counted under its route template (``"GET /api/v1/jobs/{id}/"``) so that tests can
assert exactly which calls a client made. Requests to ``/_emulator/...`` exist only on the emulator, need no key, are
not counted and are never subject to injected faults.

Faults (see :mod:`.faults`) are applied around the handler in :meth:`EmulatorRequestHandler._dispatch`: an outage,
latency, a reset, a proxy error or a 429 replace the handler; ``error_after``, ``hang``, ``truncate`` and ``malformed``
let the handler run (so a job or upload really is created) and then spoil the answer, as a proxy timing out in front
of a working backend would.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import socket
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from . import render
from .bodies import BodyError, ChunkedBody, EmptyBody, LengthLimitedBody, Readable
from .faults import FaultPlan, RequestFault, proxy_error_page
from .multipart import MultipartError, MultipartReader, Part, boundary_from_content_type
from .payloads import InvalidRequest, parse_job_request
from .probe import SNIFF_BYTES, media_type_of
from .sinks import BackgroundFileWriter
from .state import EmulatorState

log = logging.getLogger("deepva_watch.emulator")

SERVER_NAME = "deepva-emulator/0.1"
API_PREFIX = "/api/v1"
MAX_JSON_BODY = 16 << 20
MAX_PAGE_SIZE = 1000
_BYTES_REPORT_INTERVAL = 64 << 20
INLINE_WRITE_BYTES = 4 << 20


@dataclass(frozen=True)
class Response:
    """``raw`` replaces the JSON rendering of ``body`` (proxy pages, spoiled JSON); ``after`` runs once it is sent."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"
    after: Callable[[], None] | None = None


class Controls(Protocol):
    """What the ``/_emulator/*`` endpoints may change on the running emulator (implemented by the service)."""

    def update_faults(self, changes: Mapping[str, Any] | None) -> FaultPlan:
        """Merges ``changes`` into the plan (None clears it); raises ValueError with a message safe to return."""

    def apply_outage(self) -> None:
        """Opens or closes the listening socket to match the plan's ``down`` / ``down_mode``."""

    def rotate_key(self, key: str) -> None: ...


def error(status: int, detail: str, errors: list[str] | None = None) -> Response:
    """DRF-style ``{"detail": ...}``; validation failures also list every problem under ``errors``."""
    body: dict[str, Any] = {"detail": detail}
    if errors is not None:
        body["errors"] = errors
    return Response(status, body)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    params: dict[str, str]
    headers: Message
    body: Readable
    origin: str
    state: EmulatorState
    read_size: int
    controls: Controls


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    template: str
    pattern: re.Pattern[str]
    methods: Mapping[str, Handler]
    authenticated: bool = True


def _route(template: str, methods: Mapping[str, Handler], *, authenticated: bool = True) -> Route:
    """Turns ``/api/v1/jobs/{id}/`` into a regex; the trailing slash is optional because clients write both."""
    regex = re.escape(template.rstrip("/")).replace(r"\{id\}", r"(?P<id>[^/]+)")
    return Route(template, re.compile(f"^{regex}/?$"), methods, authenticated)


# -- endpoint handlers ------------------------------------------------------------------------------------------------


def _pagination(request: Request, default_limit: int) -> tuple[int, int]:
    try:
        offset = int(request.query.get("offset", "0") or 0)
        limit = int(request.query.get("limit", str(default_limit)) or default_limit)
    except ValueError:
        raise InvalidRequest(["offset and limit must be integers"]) from None
    if offset < 0 or limit < 1:
        raise InvalidRequest(["offset must be >= 0 and limit >= 1"])
    return offset, min(limit, MAX_PAGE_SIZE)


def list_jobs(request: Request) -> Response:
    """Newest first (by creation order), optionally filtered by exact ``tag``."""
    offset, limit = _pagination(request, 10)
    jobs = request.state.jobs_newest_first(request.query.get("tag"))
    links = render.page_url_builder(request.origin, request.path, request.query)
    return Response(
        200, render.page(jobs, offset, limit, links, lambda job: render.job_json(request.state, job, request.origin))
    )


def create_job(request: Request) -> Response:
    raw = _read_json(request)
    job = request.state.create_job(parse_job_request(raw))
    return Response(201, render.job_json(request.state, job, request.origin, as_created=True))


def _read_json(request: Request) -> Any:
    data = bytearray()
    while chunk := request.body.read(1 << 20):
        data += chunk
        if len(data) > MAX_JSON_BODY:
            raise InvalidRequest([f"request body larger than {MAX_JSON_BODY} bytes"])
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as problem:
        raise InvalidRequest([f"JSON parse error - {problem}"]) from None


def get_job(request: Request) -> Response:
    job = request.state.job(request.params["id"])
    if job is None:
        return error(404, "Not found.")
    return Response(200, render.job_json(request.state, job, request.origin))


def delete_job(request: Request) -> Response:
    return Response(204) if request.state.delete_job(request.params["id"]) else error(404, "Not found.")


def detailed_results(request: Request) -> Response:
    """Segments in source order, chronological within a source; empty until the job has completed."""
    state = request.state
    job = state.job(request.params["id"])
    if job is None:
        return error(404, "Not found.")
    offset, limit = _pagination(request, 100)
    segments = state.results_of(job).segments if job.timeline.is_completed(state.now()) else []
    links = render.page_url_builder(request.origin, request.path, request.query)
    return Response(200, render.page(segments, offset, limit, links, lambda segment: segment))


def list_storage(request: Request) -> Response:
    """Oldest first (by id); ``folder`` filters exactly after normalising to ``/name/``."""
    offset, limit = _pagination(request, 10)
    folder = request.query.get("folder")
    objects = request.state.objects(normalize_folder(folder) if folder is not None else None)
    links = render.page_url_builder(request.origin, request.path, request.query)
    return Response(200, render.page(objects, offset, limit, links, render.storage_json))


def _object_id(request: Request) -> int | None:
    text = request.params["id"]
    return int(text) if text.isdigit() else None


def get_storage(request: Request) -> Response:
    object_id = _object_id(request)
    stored = request.state.stored_object(object_id) if object_id is not None else None
    return Response(200, render.storage_json(stored)) if stored else error(404, "Not found.")


def delete_storage(request: Request) -> Response:
    object_id = _object_id(request)
    deleted = object_id is not None and request.state.delete_object(object_id)
    return Response(204) if deleted else error(404, "Not found.")


def upload(request: Request) -> Response:
    """Streams the ``file`` part to disk while it arrives; nothing of its size is ever held in memory."""
    boundary = boundary_from_content_type(request.headers.get("Content-Type", ""))
    state = request.state
    with state.upload_in_progress():
        folder = "/"
        received: tuple[Path, str, int, bytes] | None = None
        incoming: Path | None = None
        try:
            for part in MultipartReader(request.body, boundary, read_size=request.read_size):
                if part.name == "file" and received is None:
                    incoming = state.incoming_path()
                    size, head = _write_part(part, incoming, state, small=_small_body(request))
                    received = (incoming, _display_name(part.filename), size, head)
                elif part.name == "folder":
                    folder = normalize_folder(part.read_text())
                else:
                    part.skip()
            if received is None:
                raise InvalidRequest(["file: No file was submitted."])
            path, name, size, head = received
            stored = state.store_upload(path, name, folder, size, media_type_of(head))
        except BaseException:
            if incoming is not None:
                incoming.unlink(missing_ok=True)
            raise
    return Response(201, render.storage_json(stored))


def _small_body(request: Request) -> bool:
    return isinstance(request.body, LengthLimitedBody) and request.body.length <= INLINE_WRITE_BYTES


def _write_part(part: Part, destination: Path, state: EmulatorState, *, small: bool) -> tuple[int, bytes]:
    """A large body is written on a second thread (see :mod:`.sinks`); a small one here, in the request's thread,
    where starting a thread would cost more than the writing."""
    size = 0
    unreported = 0
    head = b""
    with (destination.open("wb") if small else BackgroundFileWriter(destination)) as sink:
        for chunk in part.chunks():
            if len(head) < SNIFF_BYTES:
                head += bytes(chunk[: SNIFF_BYTES - len(head)])
            sink.write(chunk)
            size += len(chunk)
            unreported += len(chunk)
            if unreported >= _BYTES_REPORT_INTERVAL:
                state.count_uploaded_bytes(unreported)
                unreported = 0
    state.count_uploaded_bytes(unreported)
    return size, head


def _display_name(filename: str | None) -> str:
    """The last path component only: some clients send ``C:\\Users\\me\\clip.mp4``."""
    if not filename:
        return "file"
    return PurePosixPath(filename.replace("\\", "/")).name or "file"


def normalize_folder(folder: str) -> str:
    """``""``, ``"/"`` → ``"/"``; ``"news"``, ``"/news"`` → ``"/news/"``."""
    inner = folder.strip().strip("/")
    return f"/{inner}/" if inner else "/"


def emulator_stats(request: Request) -> Response:
    return Response(200, request.state.stats())


def read_faults(request: Request) -> Response:
    return Response(200, request.state.faults.plan.to_json())


def change_faults(request: Request) -> Response:
    """Merges the posted fields into the current plan; an outage that closes the socket starts after this answer."""
    changes = _read_json(request)
    if not isinstance(changes, dict):
        raise InvalidRequest(["faults: expected a JSON object"])
    merged = {**request.state.faults.plan.to_json(), **changes}
    if merged["down"] and merged["down_mode"] == "refuse" and not merged["down_for"]:
        raise InvalidRequest(["down_for: required with down_mode 'refuse', or nothing could switch the emulator back on"])
    try:
        plan = request.controls.update_faults(changes)
    except ValueError as problem:
        raise InvalidRequest([str(problem)]) from None
    return Response(200, plan.to_json(), {"Connection": "close"}, after=request.controls.apply_outage)


def clear_faults(request: Request) -> Response:
    plan = request.controls.update_faults(None)
    return Response(200, plan.to_json(), after=request.controls.apply_outage)


def rotate_key(request: Request) -> Response:
    """``{"api_key": "new"}``: from now on only the new key is accepted. The key is never echoed."""
    body = _read_json(request)
    key = body.get("api_key") if isinstance(body, dict) else None
    if not isinstance(key, str) or not key.strip():
        raise InvalidRequest(["api_key: a non-empty string is required"])
    request.controls.rotate_key(key.strip())
    return Response(200, {"detail": "API key rotated."})


ROUTES: tuple[Route, ...] = (
    _route("/api/v1/jobs/", {"GET": list_jobs, "POST": create_job}),
    _route("/api/v1/jobs/{id}/", {"GET": get_job, "DELETE": delete_job}),
    _route("/api/v1/jobs/{id}/detailed-results/", {"GET": detailed_results}),
    _route("/api/v1/storage/", {"GET": list_storage, "POST": upload}),
    _route("/api/v1/storage/{id}/", {"GET": get_storage, "DELETE": delete_storage}),
    _route("/_emulator/stats", {"GET": emulator_stats}, authenticated=False),
    _route("/_emulator/faults", {"GET": read_faults, "POST": change_faults, "DELETE": clear_faults}, authenticated=False),
    _route("/_emulator/rotate-key", {"POST": rotate_key}, authenticated=False),
)
CONTROL_PREFIX = "/_emulator/"


def match_route(path: str) -> tuple[Route | None, dict[str, str]]:
    for route in ROUTES:
        found = route.pattern.match(path)
        if found:
            return route, found.groupdict()
    return None, {}


# -- the server -------------------------------------------------------------------------------------------------------


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], state: EmulatorState, api_key: str, read_size: int, controls: Controls
    ) -> None:
        self.state = state
        self.api_key = api_key.encode("utf-8")
        self.read_size = read_size
        self.controls = controls
        self.stopping = threading.Event()
        """Set on stop, so that injected latency and held answers end at once instead of pinning threads."""
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, EmulatorRequestHandler)

    def server_name_and_port(self) -> str:
        address, port = self.server_address[:2]
        host = address.decode() if isinstance(address, bytes) else address
        return f"{host}:{port}"

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Kept-alive connections would otherwise go on being served after stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class EmulatorRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorHTTPServer
    timeout = 300  # an idle kept-alive connection must not pin a thread forever
    rbufsize = 64 * 1024

    def version_string(self) -> str:
        return SERVER_NAME

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes; with Nagle's algorithm the second would wait for a delayed ACK
        # (40 ms on Linux), which made every small response slow.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        self.server.untrack(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_GET

    def _dispatch(self) -> None:
        method = self.command
        split = urlsplit(self.path)
        path = split.path
        route, params = match_route(path)
        fault = RequestFault()
        if not path.startswith(CONTROL_PREFIX):
            route_key = f"{method} {route.template if route else '(unmatched)'}"
            self.server.state.record_request(route_key)
            faults = self.server.state.faults
            if faults.plan.down:
                faults.count("down")
                self._reset_connection()
                return
            fault = faults.for_request(route_key)
            if fault.latency and self.server.stopping.wait(fault.latency):
                self._reset_connection()
                return
        try:
            body = self._open_body()
        except BodyError as problem:
            self.close_connection = True
            self._send(error(400, str(problem)))
            return
        request = Request(
            method=method,
            path=path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            params=params,
            headers=self.headers,
            body=body,
            origin=self._origin(),
            state=self.server.state,
            read_size=self.server.read_size,
            controls=self.server.controls,
        )
        if fault.kind == "reset":
            self._reset_mid_body(body, self.server.state.faults.plan.reset_after_bytes)
            return
        try:
            response = self._before_handling(fault) or self._handle(request, route)
        except InvalidRequest as invalid:
            response = error(400, str(invalid), invalid.errors)
        except (BodyError, MultipartError) as problem:
            self.close_connection = True
            response = error(400, str(problem))
        except Exception:
            log.exception("emulator failed on %s %s", method, path)
            self.close_connection = True
            response = error(500, "A server error occurred.")
        self._drain(body)
        response = self._spoil(response, fault)
        if fault.kind == "hang" and self.server.stopping.wait(self.server.state.faults.plan.hang_seconds):
            self._reset_connection()
            return
        self._send(response)
        if response.after is not None:
            response.after()

    # -- faults ---------------------------------------------------------------------------------------------------

    def _before_handling(self, fault: RequestFault) -> Response | None:
        if fault.kind == "error":
            return _proxy_error(fault.status)
        if fault.kind == "rate_limit":
            seconds = self.server.state.faults.plan.retry_after
            detail = f"Request was throttled. Expected available in {seconds} seconds."
            return Response(429, {"detail": detail}, {"Retry-After": str(seconds)})
        return None

    def _spoil(self, response: Response, fault: RequestFault) -> Response:
        if fault.kind == "error_after":
            return _proxy_error(fault.status)
        if fault.kind not in ("truncate", "malformed"):
            return response
        status = 200 if response.status == 204 else response.status
        if fault.kind == "malformed":
            return Response(status, raw=b'{"id": ', headers=response.headers)
        whole = json.dumps(response.body, ensure_ascii=False).encode("utf-8") if response.body is not None else b""
        return Response(status, raw=whole[: len(whole) // 2], headers=response.headers)

    def _reset_mid_body(self, body: ChunkedBody | LengthLimitedBody | EmptyBody, limit: int) -> None:
        """Reads up to ``limit`` body bytes, then drops the connection with a TCP RST, as a crashing proxy does."""
        received = 0
        try:
            while received < limit and (chunk := body.read(min(1 << 16, limit - received))):
                received += len(chunk)
        except (BodyError, OSError):
            pass
        self._reset_connection()

    def _reset_connection(self) -> None:
        """``SO_LINGER`` 0 turns close() into an RST: the client sees "connection reset", not a clean end."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # The buffered reader holds a reference to the socket; the descriptor only closes when both are closed.
        for stream in (self.rfile, self.wfile):
            try:
                stream.close()
            except OSError:
                pass
        self.connection.close()

    def _handle(self, request: Request, route: Route | None) -> Response:
        needs_key = (
            route.authenticated if route else request.path.startswith(API_PREFIX + "/") or request.path == API_PREFIX
        )
        if needs_key:
            refusal = self._check_key()
            if refusal is not None:
                return refusal
        if route is None:
            return error(404, "Not found.")
        handler = route.methods.get(request.method)
        if handler is None:
            allowed = ", ".join(sorted(route.methods))
            return Response(405, {"detail": f'Method "{request.method}" not allowed.'}, {"Allow": allowed})
        return handler(request)

    def _check_key(self) -> Response | None:
        """``Authorization: Key <key>``, scheme case-insensitive as in DRF; compared in constant time, never logged."""
        header = self.headers.get("Authorization")
        unauthenticated = {"WWW-Authenticate": "Key"}
        if not header:
            return Response(401, {"detail": "Authentication credentials were not provided."}, unauthenticated)
        scheme, _, key = header.strip().partition(" ")
        if scheme.lower() != "key" or not key.strip():
            return Response(401, {"detail": "Authentication credentials were not provided."}, unauthenticated)
        if not hmac.compare_digest(key.strip().encode("utf-8"), self.server.api_key):
            return Response(401, {"detail": "Invalid API key."}, unauthenticated)
        return None

    def _open_body(self) -> ChunkedBody | LengthLimitedBody | EmptyBody:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return ChunkedBody(self.rfile)
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return EmptyBody()
        try:
            length = int(length_text)
        except ValueError:
            raise BodyError("invalid Content-Length") from None
        if length < 0:
            raise BodyError("invalid Content-Length")
        return LengthLimitedBody(self.rfile, length)

    def _drain(self, body: ChunkedBody | LengthLimitedBody | EmptyBody) -> None:
        """Reads what a handler left unread, so the client sees our answer rather than a reset connection."""
        if self.close_connection or body.exhausted:
            return
        try:
            while body.read(1 << 20):
                pass
        except (BodyError, OSError):
            self.close_connection = True

    def _origin(self) -> str:
        host = self.headers.get("Host")
        if not host:
            host = f"{self.server.server_name_and_port()}"
        return f"http://{host}"

    def _send(self, response: Response) -> None:
        if response.raw is not None:
            payload = response.raw
        elif response.body is None:
            payload = b""
        else:
            payload = json.dumps(response.body, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(response.status, HTTPStatus(response.status).phrase)
            for name, value in response.headers.items():
                self.send_header(name, value)
            if response.status != 204:
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(payload)))
            if self.close_connection and "Connection" not in response.headers:
                self.send_header("Connection", "close")
            self.end_headers()
            if payload and self.command != "HEAD" and response.status != 204:
                self.wfile.write(payload)
        except OSError:
            self.close_connection = True


def _proxy_error(status: int) -> Response:
    return Response(status, raw=proxy_error_page(status), content_type="text/html")
