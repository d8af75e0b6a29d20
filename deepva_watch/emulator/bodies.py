"""Request bodies as plain readable streams, whether framed by Content-Length or by chunked transfer encoding.

``http.server`` hands over the raw socket stream; reading past the body would block on a kept-alive connection, and
chunked bodies arrive with their framing. These readers turn both into "read up to n bytes, b'' at the end", which is
all the multipart parser and the JSON reader need.
"""

from __future__ import annotations

from typing import Protocol


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class LineReadable(Protocol):
    """What the socket's buffered reader offers; chunk framing needs ``readline``."""

    def read(self, size: int, /) -> bytes: ...

    def readline(self, size: int, /) -> bytes: ...


class BodyError(ValueError):
    """The request body is not framed the way its headers say, or the client went away while sending it.

    Either way the connection cannot be reused. Socket errors are turned into this on purpose, so that a client hanging
    up mid-upload is told apart from a real failure of the emulator (such as a full disk).
    """


def _read(stream: LineReadable, size: int) -> bytes:
    try:
        return stream.read(size)
    except OSError as problem:
        raise BodyError(f"connection lost while reading the body: {problem}") from None


class LengthLimitedBody:
    def __init__(self, stream: LineReadable, length: int) -> None:
        self._stream = stream
        self.length = length
        self._remaining = length

    def read(self, size: int, /) -> bytes:
        if self._remaining <= 0:
            return b""
        data = _read(self._stream, min(size, self._remaining))
        if not data:
            raise BodyError("connection closed before the announced Content-Length was received")
        self._remaining -= len(data)
        return data

    @property
    def exhausted(self) -> bool:
        return self._remaining <= 0


class ChunkedBody:
    """Decodes ``Transfer-Encoding: chunked``.

    A read gathers several chunks, so small client chunks still give the parser big reads.
    """

    _MAX_LINE = 4096

    def __init__(self, stream: LineReadable) -> None:
        self._stream = stream
        self._chunk_left = 0
        self._done = False

    def read(self, size: int, /) -> bytes:
        pieces: list[bytes] = []
        wanted = size
        while wanted > 0 and not self._done:
            if self._chunk_left == 0:
                self._start_chunk()
                continue
            data = _read(self._stream, min(wanted, self._chunk_left))
            if not data:
                raise BodyError("connection closed inside a chunk")
            pieces.append(data)
            wanted -= len(data)
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                self._expect_crlf()
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    @property
    def exhausted(self) -> bool:
        return self._done

    def _start_chunk(self) -> None:
        line = self._line()
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BodyError("malformed chunk size line") from None
        if size < 0:
            raise BodyError("malformed chunk size line")
        if size == 0:
            while self._line():  # trailer fields end with an empty line
                pass
            self._done = True
        self._chunk_left = size

    def _expect_crlf(self) -> None:
        if _read(self._stream, 2) != b"\r\n":
            raise BodyError("chunk data not followed by CRLF")

    def _line(self) -> bytes:
        try:
            line = self._stream.readline(self._MAX_LINE + 1)
        except OSError as problem:
            raise BodyError(f"connection lost while reading the body: {problem}") from None
        if not line.endswith(b"\n") or len(line) > self._MAX_LINE:
            raise BodyError("chunk framing line missing or too long")
        return line.rstrip(b"\r\n")


class EmptyBody:
    def read(self, size: int, /) -> bytes:
        return b""

    @property
    def exhausted(self) -> bool:
        return True
