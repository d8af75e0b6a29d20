"""The streaming parts on their own: multipart parsing at any read size, chunked bodies, and the background writer."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from deepva_watch.emulator.bodies import BodyError, ChunkedBody, LengthLimitedBody
from deepva_watch.emulator.multipart import (
    MultipartError,
    MultipartReader,
    boundary_from_content_type,
    parse_header_value,
)
from deepva_watch.emulator.sinks import BackgroundFileWriter
from deepva_watch.emulator.timeline import Timeline

BOUNDARY = b"XyZ-boundary-42"


class TrickleStream:
    """Hands out at most ``step`` bytes per read, whatever was asked for, like a slow socket."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = io.BytesIO(data)
        self._step = step
        self.largest_request = 0

    def read(self, size: int, /) -> bytes:
        self.largest_request = max(self.largest_request, size)
        return self._data.read(min(size, self._step))


def _body(file_content: bytes, *, preamble: bytes = b"", epilogue: bytes = b"\r\n") -> bytes:
    return (
        preamble
        + b"--" + BOUNDARY + b"\r\n"
        + b'Content-Disposition: form-data; name="folder"\r\n\r\n/news/'
        + b"\r\n--" + BOUNDARY + b"  \r\n"  # transport padding is allowed after a delimiter
        + b'Content-Disposition: form-data; name="file"; filename="clip;1.mp4"\r\n'
        + b"Content-Type: video/mp4\r\n\r\n"
        + file_content
        + b"\r\n--" + BOUNDARY + b"--" + epilogue
    )  # fmt: skip


def _parse(stream: TrickleStream, read_size: int) -> dict[str, tuple[str | None, bytes]]:
    parts = {}
    for part in MultipartReader(stream, BOUNDARY, read_size=read_size):
        parts[part.name] = (part.filename, b"".join(bytes(chunk) for chunk in part.chunks()))
    return parts


# Content full of delimiter look-alikes: a CR, CRLF-dash-dash, and the boundary without its leading CRLF.
TRICKY = b"\r" + b"\r\n--" + b"\r\n--XyZ-boundary-4" + b"--" + BOUNDARY + b"\r\n-" + os.urandom(3000) + b"\r\n--XyZ"


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 16, 19, 64, 4096])
def test_delimiter_split_across_reads_is_found(step: int) -> None:
    parsed = _parse(TrickleStream(_body(TRICKY, preamble=b"ignored preamble\r\n"), step), read_size=step)
    assert parsed == {"folder": (None, b"/news/"), "file": ("clip;1.mp4", TRICKY)}


@pytest.mark.parametrize("offset", range(0, 40))
def test_every_split_position_around_the_closing_delimiter(offset: int) -> None:
    """Reads of 64 bytes starting ``offset`` bytes earlier put the read boundary at every point of the delimiter."""
    content = b"a" * (200 - offset)
    parsed = _parse(TrickleStream(_body(content), 64), read_size=64)
    assert parsed["file"][1] == content


def test_large_reads_are_requested() -> None:
    stream = TrickleStream(_body(b"x" * 5_000_000), step=1 << 20)
    _parse(stream, read_size=1 << 20)
    assert stream.largest_request == 1 << 20


def test_empty_file_part_and_missing_epilogue() -> None:
    assert _parse(TrickleStream(_body(b"", epilogue=b""), 3), read_size=3)["file"][1] == b""


def test_unconsumed_part_is_skipped() -> None:
    reader = MultipartReader(TrickleStream(_body(b"payload"), 5), BOUNDARY, read_size=5)
    names = [part.name for part in reader]
    assert names == ["folder", "file"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"--" + BOUNDARY + b"\r\n" + b'Content-Disposition: form-data; name="file"\r\n\r\nno end',
        b"--" + BOUNDARY + b"\r\n" + b'Content-Disposition: form-data; name="file"',
        b"--" + BOUNDARY + b"\r\n\r\nno headers\r\n--" + BOUNDARY + b"--",
        b"--" + BOUNDARY + b"\r\n" + b"Content-Type: text/plain\r\n\r\nno name\r\n--" + BOUNDARY + b"--",
        b"--" + BOUNDARY + b"garbage\r\n",
    ],
)
def test_malformed_bodies_raise(body: bytes) -> None:
    with pytest.raises(MultipartError):
        _parse(TrickleStream(body, 4), read_size=4)


def test_small_field_size_is_limited() -> None:
    reader = MultipartReader(TrickleStream(_body(b"x"), 100), BOUNDARY)
    folder = next(iter(reader))
    with pytest.raises(MultipartError):
        folder.read_text(limit=3)


def test_header_values_with_quotes_escapes_and_rfc5987() -> None:
    assert parse_header_value('form-data; name="file"; filename="a \\"b\\"; c.jpg"') == (
        "form-data",
        {"name": "file", "filename": 'a "b"; c.jpg'},
    )
    _, params = parse_header_value(
        "form-data; name=file; filename=\"x.jpg\"; filename*=UTF-8''Zo%C3%AB%20%C3%85berg.jpg"
    )
    assert params == {"name": "file", "filename": "Zoë Åberg.jpg"}
    assert parse_header_value('form-data; filename="C:\\Users\\me\\a.jpg"')[1]["filename"] == "C:\\Users\\me\\a.jpg"


def test_boundary_from_content_type() -> None:
    assert boundary_from_content_type('multipart/form-data; boundary="quoted b"') == b"quoted b"
    assert boundary_from_content_type("Multipart/Form-Data; charset=utf-8; boundary=abc") == b"abc"
    for bad in ("text/plain; boundary=abc", "multipart/form-data", "multipart/form-data; boundary="):
        with pytest.raises(MultipartError):
            boundary_from_content_type(bad)


# -- request bodies ---------------------------------------------------------------------------------------------------


def test_chunked_body_with_extensions_and_trailers() -> None:
    raw = b"5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\nNEXT REQUEST"
    stream = io.BufferedReader(io.BytesIO(raw))  # type: ignore[arg-type]
    body = ChunkedBody(stream)
    assert body.read(3) == b"hel"
    assert body.read(1 << 20) == b"lo 0123456789"
    assert body.read(10) == b""
    assert body.exhausted
    assert stream.read() == b"NEXT REQUEST"  # nothing past the body was consumed


@pytest.mark.parametrize("raw", [b"zz\r\nhello\r\n", b"5\r\nhelloXX0\r\n\r\n", b"5\r\nhel", b"5"])
def test_broken_chunked_framing_raises(raw: bytes) -> None:
    with pytest.raises(BodyError):
        body = ChunkedBody(io.BufferedReader(io.BytesIO(raw)))  # type: ignore[arg-type]
        while body.read(100):
            pass


def test_length_limited_body_stops_at_the_length_and_notices_a_short_body() -> None:
    stream = io.BufferedReader(io.BytesIO(b"0123456789rest"))  # type: ignore[arg-type]
    body = LengthLimitedBody(stream, 10)
    assert body.read(4) + body.read(100) == b"0123456789"
    assert body.read(100) == b"" and body.exhausted
    short = LengthLimitedBody(io.BufferedReader(io.BytesIO(b"abc")), 10)  # type: ignore[arg-type]
    short.read(100)
    with pytest.raises(BodyError):
        short.read(100)


# -- writer and timeline ----------------------------------------------------------------------------------------------


def test_background_writer_writes_everything_in_order(tmp_path: Path) -> None:
    chunks = [os.urandom(1000 + index) for index in range(50)]
    with BackgroundFileWriter(tmp_path / "out.bin", depth=2) as writer:
        for chunk in chunks:
            writer.write(memoryview(chunk))
    assert (tmp_path / "out.bin").read_bytes() == b"".join(chunks)


def test_background_writer_reports_a_write_failure() -> None:
    writer = BackgroundFileWriter(Path("/dev/full"))  # every write fails with ENOSPC, as on a full disk
    writer.write(b"data" * 1024 * 1024)
    with pytest.raises(OSError):
        writer.close()


def test_timeline_phases() -> None:
    timeline = Timeline(created_at=100.0, queue_time=2.0, processing_time=4.0)
    assert timeline.phase_at(100.0).state == "waiting"
    assert timeline.phase_at(102.0).state == "waiting"
    processing = timeline.phase_at(103.0)
    assert (processing.state, processing.progress, processing.time_started) == ("processing", 0.25, 102.0)
    done = timeline.phase_at(106.0)
    assert (done.state, done.progress, done.time_completed, done.duration) == ("completed", 1.0, 106.0, 4.0)
    instant = Timeline(created_at=100.0, queue_time=0.0, processing_time=0.0)
    assert instant.phase_at(100.0).state == "completed"
    assert instant.created_phase().state == "waiting"
