"""The DeepVA REST client: the only code that knows DeepVA's paths, headers and envelopes.

Every call has a timeout, every failure becomes one of the typed errors in :mod:`deepva_watch.deepva.errors`, and
retryable failures (5xx, 429, timeouts, lost connections) are retried here with :class:`RetryPolicy`, so callers only
see errors that survived the retries. The one exception is creating a job: ``POST /jobs/`` is not idempotent, so once
the request may have reached the server we stop and report ``maybe_applied`` instead of risking a second job.

Calls go through a ``requests`` session whose connections are pooled for all of the daemon's workers. Redirects are
never followed and requests' own retries are off: only this module knows whether a call may be sent again.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import ssl
import time
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar
from urllib.parse import quote

import requests
import structlog
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from requests.exceptions import (
    ChunkedEncodingError,
    ConnectTimeout,
    ContentDecodingError,
    InvalidHeader,
    ProxyError,
    ReadTimeout,
    RequestException,
    SSLError,
)
from urllib3.exceptions import InvalidHeader as InvalidResponseHeader
from urllib3.exceptions import NewConnectionError, ReadTimeoutError

from deepva_watch import __version__
from deepva_watch.deepva import models
from deepva_watch.deepva.errors import (
    DeepVAError,
    MalformedResponse,
    NotFound,
    TransportError,
    UntrustedCertificate,
    UploadRejected,
    error_for_status,
    make_excerpt,
    may_have_been_applied,
    redact,
)
from deepva_watch.deepva.models import Job, JobPage, Segment, StorageObject
from deepva_watch.deepva.retry import RetryPolicy, parse_retry_after
from deepva_watch.deepva.upload import MultipartFileBody, Throttle

if TYPE_CHECKING:
    from deepva_watch.config import ApiConfig

log = structlog.get_logger()

T = TypeVar("T")

TAG_PAGE_SIZE = 100
#: What one answer may hold: a page of detailed results for a long video runs to a few megabytes.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Pages of one walk at most (a million segments at a hundred a page).
MAX_PAGES = 10_000
_RETRY_AFTER_STATUSES = frozenset({429, 503})
#: Connections kept open to DeepVA: more than the daemon's workers ever use at once (uploads, job creation, tracking,
#: publishing), so a connection is reused rather than opened per call.
POOL_SIZE = 32


@dataclass(frozen=True)
class _Call:
    """One logical API call, possibly sent several times."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json_body: Any = None
    body: MultipartFileBody | None = None
    resend_after_send: bool = True
    """False for calls that must not be repeated once the server may have seen them (creating a job)."""


class DeepVAClient:
    """A thread-compatible client for one DeepVA account (one base URL, one API key)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        verify: bool | str = True,
        user_agent: str = f"deepva-watch/{__version__}",
        on_response: Callable[[str, str, int | None], None] | None = None,
    ) -> None:
        """``on_response(method, route, status)`` hears every exchange (status None: no HTTP answer), with the route
        as a template (``/jobs/{id}/``), for metrics and health; it must not raise.

        ``verify`` is True (certifi's bundle), a CA bundle's path (``api.ca_bundle``) or False. A ``session`` passed in
        is used as configured (adapters, proxies, cookies) and stays the caller's to close."""
        self.base_url = base_url.rstrip("/")
        self.on_response = on_response
        self._api_key = api_key
        self._auth = _KeyAuth(api_key)
        self._owns_session = session is None
        self._session = session if session is not None else _session()
        self._timeout = timeout
        self._verify = verify
        self._retry = retry if retry is not None else RetryPolicy()
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._headers = {"Accept": "application/json", "User-Agent": user_agent}

    def __repr__(self) -> str:
        return f"DeepVAClient(base_url={redact(self.base_url, self._api_key)!r})"

    @property
    def api_key(self) -> str:
        """The key in use, for a process of the daemon's own that must call with the same one."""
        return self._api_key

    def set_api_key(self, api_key: str) -> None:
        """Use a new key from the next request on (the operator rotated it; no restart needed)."""
        self._api_key = api_key
        self._auth = _KeyAuth(api_key)

    def __enter__(self) -> DeepVAClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release pooled connections; a session passed in by the caller stays the caller's to close."""
        if self._owns_session:
            self._session.close()

    # -- jobs -------------------------------------------------------------------------------------------------------

    def create_job(
        self,
        sources: Sequence[str],
        modules: Mapping[str, Any],
        *,
        tag: str,
        webhook: Mapping[str, Any] | None = None,
    ) -> Job:
        """Create a mining job over ``sources`` with ``modules`` passed through unchanged.

        This MAY create the job on the server even when it raises (e.g. a timeout after the server accepted the body):
        callers reconcile by searching for their tag (:meth:`find_jobs_by_tag`) before trying again. A
        :class:`TransportError` with ``maybe_applied`` set is exactly that case and is never retried here, and neither
        is a 5xx (a proxy may send one after the server accepted the job); 429 and failures to connect (nothing sent)
        are.
        """
        payload: dict[str, Any] = {"sources": list(sources), "modules": dict(modules), "tag": tag}
        if webhook is not None:
            payload["webhook"] = dict(webhook)
        call = _Call("POST", "/jobs/", json_body=payload, resend_after_send=False)
        return self._parse(call, self._send(call), Job.from_api)

    def get_job(self, job_id: str) -> Job:
        call = _Call("GET", f"/jobs/{_segment(job_id)}/")
        return self._parse(call, self._send(call), Job.from_api)

    def list_jobs(
        self, *, offset: int = 0, limit: int = 10, tag: str | None = None, only: Container[str] | None = None,
    ) -> JobPage:
        """One page of jobs, newest first. With ``only``, just the jobs with those ids are read into :class:`Job`
        values; the others are counted (``JobPage.listed``). The tracker lists a page of a hundred to answer for the
        few it waits on, and reading every job of it was half of its time at the interpreter lock."""
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if tag is not None:
            params["tag"] = tag
        call = _Call("GET", "/jobs/", params=params)
        envelope = self._envelope(call, self._send(call))
        items = envelope.items
        if only is not None:
            items = [item for item in items if isinstance(item, Mapping) and item.get("id") in only]
        jobs = tuple(self._parse_value(call, item, Job.from_api) for item in items)
        listed = len(envelope.items)
        total = envelope.total if envelope.total is not None else offset + listed
        if envelope.has_next is not None:
            has_next = envelope.has_next
        else:
            has_next = bool(listed) and offset + listed < total
        return JobPage(total=total, offset=envelope.offset if envelope.offset is not None else offset, jobs=jobs,
                       has_next=has_next, listed=listed)

    def find_jobs_by_tag(self, tag: str) -> list[Job]:
        """Every job carrying exactly ``tag``, across all pages.

        The server's ``tag`` filter is used to keep the pages few, but the match is checked here as well: the filter's
        exact semantics (prefix? substring?) are not documented, and a wrong match would adopt a stranger's job.
        """
        found: list[Job] = []
        seen: set[str] = set()
        offset = 0
        for _ in range(MAX_PAGES):
            page = self.list_jobs(offset=offset, limit=TAG_PAGE_SIZE, tag=tag)
            fresh = [job for job in page.jobs if job.id not in seen]
            seen.update(job.id for job in fresh)
            found.extend(job for job in fresh if job.tag == tag)
            offset += len(page.jobs)
            # A page with nothing new means the server ignores ``offset``: stop rather than loop forever.
            if not fresh or not page.has_next or offset >= page.total:
                break
        return found

    def iter_detailed_results(self, job_id: str, *, page_size: int = 100) -> Iterator[Segment]:
        """Every segment of a job's detailed results, fetched one page at a time as the caller consumes them.

        Page URLs are built from the configured base URL with ``offset``/``limit``; the ``next`` link is only read as
        "there is more", never followed, because the documented links lack the ``/api`` prefix.
        """
        path = f"/jobs/{_segment(job_id)}/detailed-results/"
        offset = 0
        previous: list[Any] | None = None
        for _ in range(MAX_PAGES):
            call = _Call("GET", path, params={"offset": offset, "limit": page_size})
            envelope = self._envelope(call, self._send(call))
            if envelope.items == previous:  # the server ignores ``offset``: what follows would repeat for ever
                log.warning("results_page_repeated", job_id=job_id, offset=offset,
                            note="the server sent the same page again; the results end here")
                return
            previous = envelope.items
            segments = [self._parse_value(call, item, Segment.from_api) for item in envelope.items]
            yield from segments
            offset += len(segments)
            if not segments or envelope.has_next is False:
                return
            if envelope.total is not None and offset >= envelope.total:
                return
        raise MalformedResponse("GET", path, reason=f"more than {MAX_PAGES} pages of detailed results")

    def delete_job(self, job_id: str) -> None:
        """Delete a job; one that is already gone counts as deleted (a retried DELETE may find it so)."""
        self._delete(f"/jobs/{_segment(job_id)}/")

    # -- storage ----------------------------------------------------------------------------------------------------

    def upload(
        self,
        source: Path | BinaryIO,
        *,
        folder: str = "/",
        filename: str | None = None,
        on_progress: Callable[[int], None] | None = None,
        max_bytes_per_second: float | None = None,
        throttle: Throttle | None = None,
    ) -> StorageObject:
        """Upload one file to DeepVA storage; the returned object's ``url`` is a job source.

        Streams the file from disk as multipart/form-data (fields ``folder``, ``file``); never reads it into memory.
        ``source`` is a path, or a file the caller opened (and checked) and closes. The file is opened once; a retry
        after a transport error sends it again from the start. ``on_progress`` gets
        the number of file bytes sent so far in the current attempt. Raises :class:`SourceChanged` if the file changes
        size meanwhile, and :class:`UploadRejected` if the returned object has ``upload_failed`` set. ``throttle``
        shares one bandwidth cap between concurrent uploads.

        An upload cut off after bytes went out is not re-sent here: the server may keep a partial object, so the
        caller cleans up (:meth:`list_storage`, :meth:`delete_storage`) before trying again.
        """
        call_path = "/storage/"
        if throttle is None and max_bytes_per_second:
            throttle = Throttle(max_bytes_per_second, sleep=self._sleep)
        name = filename or (source.name if isinstance(source, Path) else "upload")
        with contextlib.ExitStack() as closing:
            handle = closing.enter_context(open(source, "rb", buffering=0)) if isinstance(source, Path) else source
            body = MultipartFileBody(
                handle,
                fields={"folder": folder},
                file_field="file",
                filename=name,
                throttle=throttle,
                on_progress=on_progress,
                url=call_path,
            )
            call = _Call("POST", call_path, body=body, resend_after_send=False)
            response = self._send(call)
        stored = self._parse(call, response, StorageObject.from_api)
        if stored.upload_failed:
            raise UploadRejected(
                call.method, call.path, status=response.status_code,
                excerpt=make_excerpt(f"storage object {stored.id} is marked upload_failed", self._api_key),
            )
        return stored

    def list_storage(self, folder: str = "/") -> list[StorageObject]:
        """Every object in a storage folder, across all pages (a page with nothing new ends the walk)."""
        found: dict[str, StorageObject] = {}
        offset = 0
        for _ in range(MAX_PAGES):
            call = _Call("GET", "/storage/", params={"folder": folder, "offset": offset, "limit": TAG_PAGE_SIZE})
            envelope = self._envelope(call, self._send(call))
            page = [self._parse_value(call, item, StorageObject.from_api) for item in envelope.items]
            fresh = [stored for stored in page if stored.id not in found]
            found.update((stored.id, stored) for stored in fresh)
            offset += len(page)
            if not fresh or envelope.has_next is False or (envelope.total is not None and offset >= envelope.total):
                break
        return list(found.values())

    def get_storage(self, storage_id: str) -> StorageObject:
        call = _Call("GET", f"/storage/{_segment(storage_id)}/")
        return self._parse(call, self._send(call), StorageObject.from_api)

    def delete_storage(self, storage_id: str) -> None:
        """Delete a storage object; one that is already gone counts as deleted."""
        self._delete(f"/storage/{_segment(storage_id)}/")

    # -- plumbing ---------------------------------------------------------------------------------------------------

    def _delete(self, path: str) -> None:
        try:
            self._send(_Call("DELETE", path))
        except NotFound:
            return

    def _send(self, call: _Call) -> _Reply:
        """Send ``call`` until it succeeds, fails for good, or the retry budget is spent."""
        attempts = self._retry.attempts
        for attempt in range(1, attempts + 1):
            response, error = self._attempt(call)
            if error is None:
                assert response is not None
                return response
            if not error.retryable or attempt == attempts or isinstance(error, UntrustedCertificate):
                raise error
            if not call.resend_after_send and may_have_been_applied(error):
                raise error
            delay = self._retry.delay(attempt - 1, self._rng, error.retry_after)
            if delay > self._retry.max_inline_wait:
                if error.retry_after is None:
                    error.retry_after = delay
                raise error
            log.warning(
                "api_retry",
                method=call.method,
                path=call.path,
                status=error.status,
                reason=error.reason,
                attempt=attempt,
                delay=round(delay, 3),
            )
            self._sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    def _attempt(self, call: _Call) -> tuple[_Reply | None, DeepVAError | None]:
        """One HTTP exchange. Errors are returned, not raised, so they never carry a transport exception along.

        Redirects are not followed: the API has none, and following one would carry the key to wherever it points.
        """
        headers = self._headers
        body: Any = None
        if call.body is not None:  # requests sends it with a Content-Length from len(), in the chunks it yields
            headers = {**headers, "Content-Type": call.body.content_type}
            body = call.body
        elif call.json_body is not None:
            headers = {**headers, "Content-Type": "application/json"}
            body = json.dumps(call.json_body).encode("utf-8")
        transport_error: TransportError | None = None
        try:
            raw = self._session.request(
                call.method, self.base_url + call.path, params=call.params, data=body, headers=headers,
                auth=self._auth, timeout=self._timeout, verify=self._verify, allow_redirects=False, stream=True,
            )
            try:
                content = _read_capped(raw, MAX_RESPONSE_BYTES)
            finally:
                raw.close()
        # ValueError: a header http.client refuses (a key with a line break); never its text, it is the key
        except (RequestException, ValueError) as exc:
            transport_error = _transport_error(call, exc)
        except _TooLarge:
            self._heard(call, raw.status_code)
            return None, MalformedResponse(call.method, call.path, status=raw.status_code,
                                           reason=f"response larger than {MAX_RESPONSE_BYTES} bytes")
        if transport_error is not None:
            self._heard(call, None)
            return None, transport_error
        response = _Reply(raw.status_code, raw.headers, content)
        self._heard(call, response.status_code)
        if 200 <= response.status_code < 300:
            return response, None
        if 300 <= response.status_code < 400:
            return None, _redirect_error(call, response, self._api_key)
        retry_after = None
        if response.status_code in _RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        error = error_for_status(
            call.method, call.path, response.status_code, response.content, secret=self._api_key,
            retry_after=retry_after,
        )
        return None, error

    def _heard(self, call: _Call, status: int | None) -> None:
        if self.on_response is not None:
            try:
                self.on_response(call.method, _route(call.path), status)
            except Exception:  # an observer must never break a call
                log.warning("api_observer_failed")

    def _json(self, call: _Call, response: _Reply) -> Any:
        """The body as JSON. Nesting deeper than Python's parser can follow (``[[[[…`` 100 000 deep) raises
        RecursionError rather than ValueError; it is no more JSON we can use than a syntax error, and must end as a
        recorded failure, not as a crash of the worker that asked."""
        reason = "response is not JSON"
        try:
            return json.loads(response.content)
        except ValueError:
            pass
        except RecursionError:
            reason = "response JSON is nested too deeply"
        raise MalformedResponse(
            call.method, call.path, status=response.status_code, reason=reason,
            excerpt=make_excerpt(response.content, self._api_key),
        )

    def _parse(self, call: _Call, response: _Reply, parse: Callable[[Any], T]) -> T:
        return self._parse_value(call, self._json(call, response), parse)

    def _parse_value(self, call: _Call, value: Any, parse: Callable[[Any], T]) -> T:
        problem: str | None = None
        try:
            return parse(value)
        except models.MalformedResponse as exc:
            problem = redact(str(exc), self._api_key)
        raise MalformedResponse(call.method, call.path, reason="unexpected response shape", excerpt=problem)

    def _envelope(self, call: _Call, response: _Reply) -> _Envelope:
        body = self._json(call, response)
        problem: str | None = None
        if isinstance(body, list):
            # Tolerate a bare list: one page holding everything.
            return _Envelope(items=body, total=len(body), offset=0, has_next=False)
        if not isinstance(body, Mapping):
            problem = f"expected a paginated object, got {type(body).__name__}"
        elif not isinstance(body.get("data", []), list):
            problem = "paginated object's data is not a list"
        if problem is not None:
            raise MalformedResponse(call.method, call.path, reason="unexpected response shape", excerpt=problem)
        has_next = None if "next" not in body else body["next"] is not None
        return _Envelope(
            items=body.get("data") or [],
            total=_optional_int(body.get("total")),
            offset=_optional_int(body.get("offset")),
            has_next=has_next,
        )


@dataclass(frozen=True)
class _Reply:
    """What a call brought back: the status, the headers (case-insensitive) and the whole body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


@dataclass(frozen=True)
class _Envelope:
    """DeepVA's pagination wrapper: ``{"total", "offset", "limit", "next", "prev", "data"}``."""

    items: list[Any]
    total: int | None
    offset: int | None
    has_next: bool | None
    """None when the server did not say (no ``next`` key)."""


class _TooLarge(Exception):
    pass


def _read_capped(raw: requests.Response, limit: int) -> bytes:
    """The body, read in pieces and refused past ``limit`` bytes (decoded), never held whole beyond that."""
    chunks: list[bytes] = []
    total = 0
    for chunk in raw.iter_content(64 * 1024):
        total += len(chunk)
        if total > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def client_for(api: ApiConfig, api_key: str, **options: Any) -> DeepVAClient:
    """The client ``api`` describes (URL, timeouts, retries, CA bundle)."""
    return DeepVAClient(
        api.url, api_key,
        timeout=(api.connect_timeout_seconds, api.read_timeout_seconds),
        retry=RetryPolicy(attempts=max(1, api.retries)),
        verify=str(api.ca_bundle) if api.ca_bundle else system_ca_bundle() or True,
        **options,
    )


def system_ca_bundle() -> str | None:
    """The machine's own CA bundle (public roots and any CA the operator added), where it has one: an on-prem server
    whose CA the machine trusts then works without ``api.ca_bundle``. None: fall back to certifi's bundle."""
    cafile = ssl.get_default_verify_paths().cafile
    return cafile if cafile and os.path.isfile(cafile) else None


def _redirect_error(call: _Call, response: _Reply, secret: str) -> MalformedResponse:
    """A redirect is not followed (the key would go with it); say where it pointed, which is usually the fix for
    ``api.url`` (``http://`` where the server wants ``https://``, a missing ``/api/v1``)."""
    location = response.headers.get("Location") or "nowhere"
    return MalformedResponse(
        call.method, call.path, status=response.status_code,
        reason=f"redirected to {redact(location, secret)[:200]}, not followed: set api.url to the address it points to",
    )


def _optional_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (str, float)):
        try:
            return int(float(value))
        except ValueError:
            return None
    return None


def _caused_by(exc: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]) -> bool:
    """Whether ``exc`` or anything it wraps (cause, context, arguments, urllib3's ``reason``) is one of ``kinds``.

    requests wraps urllib3's exceptions, which wrap the socket's and ssl's; only the innermost tell a refused connection
    from a lost one, or a rejected certificate from a handshake cut short.
    """
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kinds):
            return True
        if isinstance(current, BaseException):
            pending.extend([current.__cause__, current.__context__, *current.args])
        reason = getattr(current, "reason", None)
        if reason is not None:
            pending.append(reason)
    return False


class _KeyAuth(AuthBase):
    """``Authorization: Key …`` on every request. Passed as ``auth``, it also keeps requests from putting credentials
    of its own (from ``~/.netrc``) in the key's place."""

    def __init__(self, api_key: str) -> None:
        self._header = f"Key {api_key}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "_KeyAuth(***)"


def _session() -> requests.Session:
    """A session for one DeepVA endpoint: pooled connections for every worker, no retries of its own (the client
    decides), no cookies kept (the key is the only state). Proxies come from ``HTTPS_PROXY``, ``HTTP_PROXY`` and
    ``NO_PROXY``, as requests reads them."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_maxsize=POOL_SIZE, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return session


_ID_SEGMENT = re.compile(r"^/(jobs|storage)/[^/]+/")


def _route(path: str) -> str:
    """``/jobs/6b51…/detailed-results/`` → ``/jobs/{id}/detailed-results/``: bounded labels for metrics."""
    return _ID_SEGMENT.sub(lambda match: f"/{match.group(1)}/{{id}}/", path)


def _segment(identifier: str) -> str:
    """An id as one URL path segment: an id with ``/`` or ``?`` in it must not reach another endpoint."""
    return quote(str(identifier), safe="")


def _transport_error(call: _Call, exc: RequestException | ValueError) -> TransportError:
    """Describe a transport failure in our own words (never the exception's, which may hold the URL and headers),
    deciding whether the server may have seen the request."""
    method, path = call.method, call.path
    if isinstance(exc, SSLError):
        if _caused_by(exc, ssl.SSLCertVerificationError):
            return UntrustedCertificate(method, path)
        return TransportError(method, path, reason="TLS error", maybe_applied=True)
    if isinstance(exc, ProxyError):
        return TransportError(method, path, reason="proxy error", maybe_applied=True)
    if isinstance(exc, ConnectTimeout):
        return TransportError(method, path, reason="connect timed out", maybe_applied=False)
    timed_out = isinstance(exc, ReadTimeout) or (
        isinstance(exc, requests.ConnectionError) and _caused_by(exc, ReadTimeoutError))  # while reading the body
    if timed_out:
        return TransportError(method, path, reason="timed out waiting for the response", maybe_applied=True)
    if isinstance(exc, (ChunkedEncodingError, ContentDecodingError)) or _caused_by(exc, http.client.IncompleteRead):
        return TransportError(method, path, reason="response cut off", maybe_applied=True)
    if isinstance(exc, requests.ConnectionError):
        if _caused_by(exc, NewConnectionError):  # refused, unreachable, unknown name: nothing was sent
            return TransportError(method, path, reason="could not connect", maybe_applied=False)
        return TransportError(method, path, reason="connection lost", maybe_applied=True)
    if isinstance(exc, InvalidHeader) and _caused_by(exc, InvalidResponseHeader):  # the answer's headers, not ours
        return TransportError(method, path, reason="invalid response headers", maybe_applied=True)
    if isinstance(exc, ValueError):  # refused before sending: a bad URL or header
        error = TransportError(method, path, reason=f"invalid request ({type(exc).__name__})", maybe_applied=False)
        error.retryable = False
        return error
    return TransportError(method, path, reason=f"request failed ({type(exc).__name__})", maybe_applied=True)
