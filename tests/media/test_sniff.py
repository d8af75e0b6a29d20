"""Sniffing decides by content: the committed fixtures, hand-built heads, and files that are not regular files."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from deepva_watch.media.sniff import HEAD_BYTES, Sniffed, Unsupported, sniff, sniff_bytes

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "media"

MXF_HEADER_PARTITION_KEY = bytes.fromhex("060e2b34020501010d0102010102040000")


@pytest.mark.parametrize(
    ("name", "mime", "kind"),
    [
        ("sample.jpg", "image/jpeg", "image"),
        ("portrait.jpg", "image/jpeg", "image"),
        ("sample.png", "image/png", "image"),
        ("sample.mp4", "video/mp4", "video"),
        ("ntsc.mp4", "video/mp4", "video"),
        ("pal50.mp4", "video/mp4", "video"),
        ("sample.mpg", "video/mpeg", "video"),
        ("sample.mxf", "application/mxf", "video"),
        ("sample.mov", "video/quicktime", "video"),
        # Intact ftyp: sniffing judges the type, probing and DeepVA judge the damage.
        ("truncated.mp4", "video/mp4", "video"),
    ],
)
def test_every_media_fixture_is_recognised(name: str, mime: str, kind: str) -> None:
    assert sniff(FIXTURES / name) == Sniffed(mime=mime, kind=kind)  # type: ignore[arg-type]


def test_the_name_does_not_matter(tmp_path: Path) -> None:
    renamed = tmp_path / "holiday.mxf"
    renamed.write_bytes((FIXTURES / "sample.png").read_bytes())
    assert sniff(renamed) == Sniffed("image/png", "image")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty.jpg", "file is empty"),
        (
            "html-named.jpg",
            "content is HTML (starts with '<!DOCTYPE html>'), not a supported media type",
        ),
        (
            "text-named.jpg",
            "content is text (starts with 'This is a plain text note that happens t…'), not a supported media type",
        ),
    ],
)
def test_invalid_fixtures_are_rejected_with_a_reason(name: str, reason: str) -> None:
    assert sniff(FIXTURES / name) == Unsupported(reason)


@pytest.mark.parametrize(
    ("head", "what", "starts"),
    [
        (b'{"id": 1, "name": "x"}', "JSON", '{"id": 1, "name": "x"}'),
        (b"[1, 2, 3]\n", "JSON", "[1, 2, 3]"),
        (b'<?xml version="1.0"?>\n<root/>', "XML", '<?xml version="1.0"?>'),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG", '<?xml version="1.0"?>'),
        (b"\xef\xbb\xbf  <html><body>hi</body></html>", "HTML", "<html><body>hi</body></html>"),
        ("Grüße aus Köln\n".encode(), "text", "Grüße aus Köln"),
    ],
)
def test_text_is_named(head: bytes, what: str, starts: str) -> None:
    assert sniff_bytes(head) == Unsupported(f"content is {what} (starts with {starts!r}), not a supported media type")


def test_text_cut_inside_a_multibyte_character_is_still_text() -> None:
    head = ("é" * 40).encode()[:-1]
    result = sniff_bytes(head)
    assert isinstance(result, Unsupported) and result.reason.startswith("content is text")


def test_unknown_binary_is_rejected_with_its_first_bytes_in_hex() -> None:
    head = bytes([0x00, 0x01, 0x02, 0x03, 0xFE, 0x10, 0x20, 0x30, 0x40, 0x50])
    assert sniff_bytes(head) == Unsupported("unrecognised content, first bytes 00 01 02 03 fe 10 20 30 …")


def test_short_unknown_binary_has_no_ellipsis() -> None:
    assert sniff_bytes(b"\x00\x01\x02\x03") == Unsupported("unrecognised content, first bytes 00 01 02 03")


def test_too_short_to_be_media() -> None:
    assert sniff_bytes(b"\xff\xd8") == Unsupported("file is too short to be media (2 bytes)")


@pytest.mark.parametrize("brand", [b"heic", b"heix", b"mif1", b"avif"])
def test_heif_and_avif_are_rejected(brand: bytes) -> None:
    head = b"\x00\x00\x00\x18ftyp" + brand + b"\x00\x00\x00\x00" + brand + b"mif1"
    assert sniff_bytes(head) == Unsupported("HEIF/AVIF images are not supported by DeepVA")


@pytest.mark.parametrize(
    ("major", "compatible", "mime"),
    [
        (b"qt  ", b"qt  ", "video/quicktime"),
        (b"isom", b"isomiso2avc1mp41", "video/mp4"),
        (b"mp42", b"mp42isom", "video/mp4"),
        (b"3gp5", b"3gp5", "video/mp4"),
        (b"dash", b"iso6", "video/mp4"),
        # A camera's own major brand, with the standard one only among the compatible brands.
        (b"XYZ1", b"XYZ1mp42", "video/mp4"),
        (b"XYZ2", b"XYZ2qt  ", "video/quicktime"),
    ],
)
def test_iso_base_media_brands(major: bytes, compatible: bytes, mime: str) -> None:
    size = 16 + len(compatible)
    head = size.to_bytes(4, "big") + b"ftyp" + major + b"\x00\x00\x02\x00" + compatible + b"\x00\x00\x00\x08free"
    assert sniff_bytes(head) == Sniffed(mime, "video")


def test_m4a_audio_is_rejected() -> None:
    head = b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00M4A isom"
    result = sniff_bytes(head)
    assert isinstance(result, Unsupported) and "audio" in result.reason


def test_unknown_iso_brand_is_rejected_by_name() -> None:
    head = b"\x00\x00\x00\x14ftypcrx \x00\x00\x00\x01crx "
    assert sniff_bytes(head) == Unsupported("ISO base media file with brand 'crx ' is not a supported video type")


@pytest.mark.parametrize("atom", [b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"])
def test_quicktime_without_ftyp(atom: bytes) -> None:
    head = b"\x00\x00\x00\x08" + atom + b"\x00\x00\x10\x00mdat" + b"\x00" * 32
    assert sniff_bytes(head) == Sniffed("video/quicktime", "video")


def test_mpeg_elementary_stream() -> None:
    assert sniff_bytes(b"\x00\x00\x01\xb3\x0a\x00\x5a\x13" + b"\x00" * 16) == Sniffed("video/mpeg", "video")


def _ts_packets(count: int, size: int = 188, prefix: bytes = b"") -> bytes:
    packet = prefix + b"\x47\x40\x00\x10" + b"\xff" * (188 - 4)
    assert len(packet) == size
    return packet * count


def test_transport_stream_is_sniffed_as_mpeg() -> None:
    assert sniff_bytes(_ts_packets(8)) == Sniffed("video/mpeg", "video")


def test_m2ts_with_timestamps_is_sniffed_as_mpeg() -> None:
    assert sniff_bytes(_ts_packets(8, size=192, prefix=b"\x00\x01\x02\x03")) == Sniffed("video/mpeg", "video")


def test_a_single_sync_byte_is_not_a_transport_stream() -> None:
    head = b"\x47" + b"\x00" * 1000
    assert isinstance(sniff_bytes(head), Unsupported)


def test_a_broken_sync_pattern_is_not_a_transport_stream() -> None:
    head = bytearray(_ts_packets(8))
    head[188 * 3] = 0x00
    assert isinstance(sniff_bytes(bytes(head)), Unsupported)


def test_mxf_after_a_run_in() -> None:
    run_in = bytes(range(256)) * 100  # 25,600 bytes of anything, as SMPTE 377 allows before the header partition.
    head = run_in + MXF_HEADER_PARTITION_KEY + b"\x00" * 64
    assert sniff_bytes(head) == Sniffed("application/mxf", "video")


def test_mxf_after_a_run_in_on_disk_within_the_head(tmp_path: Path) -> None:
    run_in = b"\x01" * (HEAD_BYTES - 100)
    media = tmp_path / "with-run-in.mxf"
    media.write_bytes(run_in + MXF_HEADER_PARTITION_KEY + b"\x00" * 200_000)
    assert sniff(media) == Sniffed("application/mxf", "video")


def test_mxf_key_beyond_the_run_in_limit_is_not_found(tmp_path: Path) -> None:
    media = tmp_path / "too-late.mxf"
    media.write_bytes(b"\x01" * (HEAD_BYTES + 10) + MXF_HEADER_PARTITION_KEY + b"\x00" * 64)
    assert isinstance(sniff(media), Unsupported)


def test_mxf_body_partition_alone_is_not_a_header() -> None:
    body_partition = bytes.fromhex("060e2b34020501010d0102010103040000")
    assert isinstance(sniff_bytes(b"\x01" * 16 + body_partition), Unsupported)


def test_only_the_head_is_read(tmp_path: Path) -> None:
    media = tmp_path / "big.jpg"
    with media.open("wb") as handle:
        handle.write(b"\xff\xd8\xff\xe0")
        handle.truncate(2 * 1024**3)  # A sparse 2 GiB file: reading it whole would be obvious.
    assert sniff(media) == Sniffed("image/jpeg", "image")


def test_a_directory_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "looks-like.mp4"
    folder.mkdir()
    assert sniff(folder) == Unsupported("is a directory, not a media file")


def test_a_symlink_to_media_is_followed(tmp_path: Path) -> None:
    link = tmp_path / "link.bin"
    link.symlink_to(FIXTURES / "sample.mxf")
    assert sniff(link) == Sniffed("application/mxf", "video")


def test_a_fifo_is_rejected_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    results: list[Sniffed | Unsupported] = []
    worker = threading.Thread(target=lambda: results.append(sniff(fifo)), daemon=True)
    worker.start()
    worker.join(timeout=5)
    if worker.is_alive():
        # Unblock the stuck reader so the test run can finish, then fail.
        descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(descriptor)
        pytest.fail("sniff blocked on a FIFO")
    assert results == [Unsupported("is a named pipe (FIFO), not a regular file")]


def test_a_character_device_is_rejected() -> None:
    assert sniff(Path("/dev/null")) == Unsupported("is a device, not a regular file")


def test_a_missing_file_raises_rather_than_being_judged(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        sniff(tmp_path / "gone.jpg")
