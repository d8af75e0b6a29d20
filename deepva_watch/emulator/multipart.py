"""A streaming ``multipart/form-data`` parser, written for multi-gigabyte uploads.

Why hand-written: the standard library's ``cgi`` module is deprecated (removed in 3.13) and ``email`` parses whole
messages in memory. The parser reads the body in large blocks (1 MiB by default), looks for the delimiter with
``bytes.find`` (a C-speed search) and hands out ``memoryview`` slices, so each byte is copied about once between the
socket and the file. A delimiter split across two reads is found because the parser keeps back only the tail that could
still be the start of a delimiter; when the tail holds no CR at all it keeps nothing and avoids the copy altogether.

Usage::

    for part in MultipartReader(body, boundary):
        if part.name == "file":
            for chunk in part.chunks():  # read-only memoryviews; the parser never reuses their buffers
                sink.write(chunk)

A part that is not consumed is skipped when the next one is requested.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from .bodies import Readable


class MultipartError(ValueError):
    """The body is not valid multipart/form-data; the message is safe to show to the client."""


@dataclass(frozen=True)
class PartHeaders:
    name: str
    filename: str | None
    content_type: str | None
    fields: Mapping[str, str]


def boundary_from_content_type(content_type: str) -> bytes:
    kind, params = parse_header_value(content_type)
    if kind.lower() != "multipart/form-data":
        raise MultipartError("expected a multipart/form-data body")
    boundary = params.get("boundary", "")
    if not 1 <= len(boundary) <= 70:
        raise MultipartError("multipart boundary missing or longer than 70 characters")
    return boundary.encode("latin-1")


def parse_header_value(value: str) -> tuple[str, dict[str, str]]:
    """``form-data; name="file"; filename="a;b.jpg"`` → ("form-data", {"name": "file", "filename": "a;b.jpg"}).

    Quoted strings may contain ``;``. A backslash escapes only ``"`` and another backslash, as Django reads it: browsers
    and urllib3 send Windows paths like ``C:\\Users\\clip.mp4`` with single, unescaped backslashes.
    ``filename*=UTF-8''...`` (RFC 5987) wins over ``filename``.
    """
    pieces: list[str] = []
    current: list[str] = []
    quoted = False
    index = 0
    while index < len(value):
        char = value[index]
        index += 1
        if quoted and char == "\\" and index < len(value) and value[index] in '"\\':
            current.append(value[index])
            index += 1
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    pieces.append("".join(current))
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        key, sep, raw = piece.partition("=")
        if sep:
            params[key.strip().lower()] = raw.strip()
    for key in [k for k in params if k.endswith("*")]:
        charset, _, rest = params.pop(key).partition("'")
        _, _, encoded = rest.partition("'")
        params[key[:-1]] = unquote(encoded, encoding=charset or "utf-8", errors="replace")
    return pieces[0].strip(), params


class Part:
    def __init__(self, reader: MultipartReader, headers: PartHeaders) -> None:
        self._reader = reader
        self.headers = headers
        self._finished = False

    @property
    def name(self) -> str:
        return self.headers.name

    @property
    def filename(self) -> str | None:
        return self.headers.filename

    def chunks(self) -> Iterator[memoryview]:
        if self._finished:
            return
        self._finished = True
        yield from self._reader.body_chunks()

    def read_text(self, limit: int = 64 * 1024) -> str:
        """For small form fields such as ``folder``; a field above ``limit`` bytes is refused rather than buffered."""
        collected = bytearray()
        for chunk in self.chunks():
            collected += chunk
            if len(collected) > limit:
                raise MultipartError(f"form field {self.name!r} is longer than {limit} bytes")
        return collected.decode("utf-8", errors="replace")

    def skip(self) -> None:
        for _ in self.chunks():
            pass


class MultipartReader:
    def __init__(self, stream: Readable, boundary: bytes, *, read_size: int = 1 << 20, max_header_bytes: int = 16384):
        self._stream = stream
        self._delimiter = b"\r\n--" + boundary
        self._read_size = read_size
        self._max_header_bytes = max_header_bytes
        # The first delimiter has no CRLF before it; pretending there was one lets one search pattern find them all.
        self._buffer = b"\r\n"
        self._view = memoryview(self._buffer)
        self._position = 0
        self._eof = False
        self._current: Part | None = None
        self._started = False
        self._closed = False

    def __iter__(self) -> Iterator[Part]:
        if not self._started:
            self._started = True
            self._skip_preamble()
        while True:
            if self._current is not None:
                self._current.skip()
            if not self._after_delimiter():
                self._closed = True
                return
            self._current = Part(self, self._read_headers())
            yield self._current

    # -- buffer handling ---------------------------------------------------------------------------------------

    def _available(self) -> int:
        return len(self._buffer) - self._position

    def _fill(self) -> bool:
        """Append one read to what is still unconsumed; False at the end of the stream."""
        if self._eof:
            return False
        data = self._stream.read(self._read_size)
        if not data:
            self._eof = True
            return False
        rest = self._buffer[self._position :] if self._position < len(self._buffer) else b""
        self._buffer = rest + data if rest else data
        self._view = memoryview(self._buffer)
        self._position = 0
        return True

    def _need(self, count: int) -> None:
        while self._available() < count:
            if not self._fill():
                raise MultipartError("multipart body ended early")

    # -- grammar -----------------------------------------------------------------------------------------------

    def _skip_preamble(self) -> None:
        for _ in self.body_chunks():
            pass

    def _after_delimiter(self) -> bool:
        """After ``--boundary`` comes ``--`` (the end) or optional whitespace and CRLF (another part)."""
        self._need(2)
        if self._buffer[self._position : self._position + 2] == b"--":
            self._position += 2
            self._drain_epilogue()
            return False
        while True:
            self._need(2)
            pair = self._buffer[self._position : self._position + 2]
            if pair == b"\r\n":
                self._position += 2
                return True
            if pair[:1] in (b" ", b"\t"):
                self._position += 1
                continue
            raise MultipartError("malformed multipart delimiter line")

    def _drain_epilogue(self) -> None:
        self._position = len(self._buffer)
        while self._fill():
            self._position = len(self._buffer)

    def _read_headers(self) -> PartHeaders:
        self._need(2)
        if self._buffer[self._position : self._position + 2] == b"\r\n":
            self._position += 2
            raise MultipartError("multipart part without Content-Disposition")
        while True:
            end = self._buffer.find(b"\r\n\r\n", self._position)
            if end >= 0:
                break
            if self._available() > self._max_header_bytes:
                raise MultipartError("multipart part headers too long")
            if not self._fill():
                raise MultipartError("multipart body ended inside part headers")
        raw = self._buffer[self._position : end].decode("utf-8", errors="replace")
        self._position = end + 4
        fields: dict[str, str] = {}
        for line in raw.split("\r\n"):
            key, sep, value = line.partition(":")
            if not sep:
                raise MultipartError("malformed multipart part header")
            fields[key.strip().lower()] = value.strip()
        disposition, params = parse_header_value(fields.get("content-disposition", ""))
        if disposition.lower() != "form-data" or "name" not in params:
            raise MultipartError("multipart part without a form-data name")
        return PartHeaders(
            name=params["name"],
            filename=params.get("filename"),
            content_type=fields.get("content-type"),
            fields=fields,
        )

    def body_chunks(self) -> Iterator[memoryview]:
        delimiter = self._delimiter
        keep = len(delimiter) - 1
        while True:
            found = self._buffer.find(delimiter, self._position)
            if found >= 0:
                if found > self._position:
                    yield self._view[self._position : found]
                self._position = found + len(delimiter)
                return
            # Without a delimiter in the buffer, everything is body except a tail that may start the next delimiter.
            # A delimiter starts with CR, so a tail without CR can go out too.
            tail_start = max(self._position, len(self._buffer) - keep)
            carriage_return = self._buffer.find(b"\r", tail_start)
            safe_end = carriage_return if carriage_return >= 0 else len(self._buffer)
            if safe_end > self._position:
                yield self._view[self._position : safe_end]
                self._position = safe_end
            if not self._fill():
                raise MultipartError("multipart body ended before the closing boundary")
