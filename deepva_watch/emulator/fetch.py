"""Fetching ``http(s)`` job sources — from loopback only.

A real server downloads URL sources itself. The emulator does the same when the host is loopback (``localhost``,
``127.0.0.0/8``, ``::1``), so a test can publish media with a tiny local HTTP server and see results computed from the
real bytes. It never opens a connection anywhere else: tests and demos must not reach out, so other URLs are accepted
unfetched (see :mod:`.sources`). Host names are never resolved through DNS, and redirects are followed only while they
stay on loopback.

The body is streamed to a file in the data directory, at most ``max_bytes`` long; a failure is reported as a one-line
reason (``HTTP 404``, ``connection refused``) that ends up in the job's ``errors``.
"""

from __future__ import annotations

import http.client
import ipaddress
import ssl
import uuid
from pathlib import Path
from urllib.parse import urljoin, urlsplit

_MAX_REDIRECTS = 5
_READ_SIZE = 1 << 20


class FetchFailed(Exception):
    """The source could not be downloaded; the message is safe to return to the client."""


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def fetch_to_file(url: str, directory: Path, *, max_bytes: int, timeout: float) -> Path:
    """Downloads ``url`` into a new file under ``directory`` and returns its path; the caller removes it."""
    directory.mkdir(parents=True, exist_ok=True)
    destination = directory / f"{uuid.uuid4().hex}.fetch"
    try:
        _download(url, destination, max_bytes, timeout)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    return destination


def _download(url: str, destination: Path, max_bytes: int, timeout: float) -> None:
    current = url
    for _ in range(_MAX_REDIRECTS + 1):
        parts = urlsplit(current)
        if parts.scheme not in ("http", "https") or not is_loopback_host(parts.hostname):
            raise FetchFailed("redirected to a host this server does not fetch from")
        connection = _connect(parts.scheme, parts.hostname or "", parts.port, timeout)
        try:
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            try:
                connection.request("GET", target, headers={"User-Agent": "deepva-emulator/0.1"})
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as problem:
                raise FetchFailed(_describe(problem)) from None
            if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                current = urljoin(current, response.getheader("Location", ""))
                continue
            if response.status != 200:
                raise FetchFailed(f"HTTP {response.status}")
            _stream(response, destination, max_bytes)
            return
        finally:
            connection.close()
    raise FetchFailed("too many redirects")


def _connect(scheme: str, host: str, port: int | None, timeout: float) -> http.client.HTTPConnection:
    if scheme == "https":
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
    return http.client.HTTPConnection(host, port, timeout=timeout)


def _stream(response: http.client.HTTPResponse, destination: Path, max_bytes: int) -> None:
    written = 0
    try:
        with destination.open("wb") as sink:
            while chunk := response.read(_READ_SIZE):
                written += len(chunk)
                if written > max_bytes:
                    raise FetchFailed(f"larger than the {max_bytes} bytes this server accepts")
                sink.write(chunk)
    except (OSError, http.client.HTTPException) as problem:
        raise FetchFailed(_describe(problem)) from None


def _describe(problem: BaseException) -> str:
    if isinstance(problem, ConnectionRefusedError):
        return "connection refused"
    if isinstance(problem, TimeoutError):
        return "timed out"
    if isinstance(problem, http.client.IncompleteRead):
        return "connection closed before the whole file arrived"
    return problem.__class__.__name__ + (f": {problem}" if str(problem) else "")
