"""A multipart/form-data body streamed from an open file, with an optional bandwidth cap.

requests builds ``files=`` bodies in memory, and media files run to tens of gigabytes, so the body is produced here
piece by piece: the form preamble, the file in large chunks, the closing boundary. The object has ``__len__`` so
requests sends a Content-Length (DeepVA's storage endpoint, like most upload endpoints behind proxies, is not known to
accept chunked transfer encoding) and ``__iter__`` so each chunk goes to the socket as it comes. It deliberately has no
``read()``: urllib3, beneath requests, would then pull 16 KiB at a time, a fraction of the throughput of 1 MiB chunks.

The Content-Length is promised before the first byte is sent, so the file must not change size underneath us; it is
checked before, during and after sending and :class:`SourceChanged` stops the request instead of sending a body that
does not match the promise.
"""

from __future__ import annotations

import mimetypes
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

from deepva_watch.deepva.errors import SourceChanged

CHUNK_SIZE = 1024 * 1024
MIN_THROTTLED_CHUNK = 16 * 1024
# Formats DeepVA accepts that the platform's MIME table may not know.
_EXTRA_TYPES = {".mxf": "application/mxf", ".mov": "video/quicktime", ".mpg": "video/mpeg", ".mpeg": "video/mpeg"}


class Throttle:
    """A token bucket: on average no more than ``rate`` bytes per second, with bursts up to ``burst`` bytes.

    The bucket starts empty so that even a short upload keeps to the cap. A consumer that takes more than is available
    goes into debt and sleeps it off; there is no polling loop, so an injected clock and sleep fully control it.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("bandwidth cap must be positive")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else self.rate
        self._clock = clock
        self._sleep = sleep
        self._tokens = 0.0
        self._last = clock()
        self._lock = threading.Lock()

    def consume(self, amount: int) -> None:
        """Take ``amount`` bytes' worth; safe to share between threads, which then split the rate between them."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= amount
            debt = -self._tokens
        if debt > 0:
            self._sleep(debt / self.rate)

    def chunk_size(self, preferred: int) -> int:
        """A chunk small enough to keep the rate smooth: about an eighth of a second's worth."""
        return max(MIN_THROTTLED_CHUNK, min(preferred, int(self.rate / 8)))


def guess_content_type(filename: str) -> str:
    extension = os.path.splitext(filename)[1].lower()
    if extension in _EXTRA_TYPES:
        return _EXTRA_TYPES[extension]
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"


def _quote_parameter(value: str) -> str:
    """Escape a Content-Disposition parameter the way browsers do (WHATWG multipart/form-data encoding)."""
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartFileBody:
    """The body of one ``POST /storage/``: text fields, then one file field streamed from ``handle``.

    Every iteration starts from the beginning of the file, so a retried request sends the whole body again. Progress is
    reported as the number of file bytes handed to the socket in the current attempt.
    """

    def __init__(
        self,
        handle: BinaryIO,
        *,
        fields: dict[str, str],
        file_field: str,
        filename: str,
        content_type: str | None = None,
        chunk_size: int = CHUNK_SIZE,
        throttle: Throttle | None = None,
        on_progress: Callable[[int], None] | None = None,
        method: str = "POST",
        url: str = "/storage/",
    ) -> None:
        self._handle = handle
        self._size = os.fstat(handle.fileno()).st_size
        self._throttle = throttle
        self._chunk_size = throttle.chunk_size(chunk_size) if throttle else chunk_size
        self._on_progress = on_progress
        self._method = method
        self._url = url
        self.boundary = secrets.token_hex(16)
        parts = []
        for name, value in fields.items():
            parts.append(
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="{_quote_parameter(name)}"\r\n\r\n'
                f"{value}\r\n"
            )
        parts.append(
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{_quote_parameter(file_field)}"; '
            f'filename="{_quote_parameter(filename)}"\r\n'
            f"Content-Type: {content_type or guess_content_type(filename)}\r\n\r\n"
        )
        self._preamble = "".join(parts).encode("utf-8")
        self._epilogue = f"\r\n--{self.boundary}--\r\n".encode("ascii")

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def file_size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._preamble) + self._size + len(self._epilogue)

    def __iter__(self) -> Iterator[bytes]:
        self._check_size("before sending")
        self._handle.seek(0)
        if self._size <= self._chunk_size:  # a small file goes out in one piece: one write instead of three
            yield self._pace(self._preamble + b"".join(self._file_chunks()) + self._epilogue)
            return
        yield self._pace(self._preamble)
        yield from (self._pace(chunk) for chunk in self._file_chunks())
        yield self._pace(self._epilogue)

    def _file_chunks(self) -> Iterator[bytes]:
        """The file in chunks, reporting progress as each is taken, and refusing a file that changed meanwhile."""
        sent = 0
        if self._on_progress:
            self._on_progress(0)
        while sent < self._size:
            chunk = self._handle.read(min(self._chunk_size, self._size - sent))
            if not chunk:
                raise self._changed("file became shorter while sending")
            yield chunk
            sent += len(chunk)
            if self._on_progress:
                self._on_progress(sent)
        if self._handle.read(1):
            raise self._changed("file grew while sending")
        self._check_size("after sending")

    def _pace(self, chunk: bytes) -> bytes:
        if self._throttle:
            self._throttle.consume(len(chunk))
        return chunk

    def _check_size(self, when: str) -> None:
        current = os.fstat(self._handle.fileno()).st_size
        if current != self._size:
            raise self._changed(f"file size changed {when} ({self._size} -> {current} bytes)")

    def _changed(self, reason: str) -> SourceChanged:
        return SourceChanged(self._method, self._url, reason=reason)
