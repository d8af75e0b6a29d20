"""Decide what a file is from its first bytes, never from its name.

Watch folders collect whatever people drop there: a web page saved as ``photo.jpg``, a zero-byte placeholder, an HEIC
from a phone. Uploading those costs bandwidth and a DeepVA job that can only fail, so the sniff stage reads a small head
of the file and either names a supported type or gives a reason a person can act on.

Sniffing judges the *kind* of content, not its integrity: a truncated MP4 whose ``ftyp`` box is intact is accepted here,
and probing (or DeepVA itself) reports that it holds no playable video. Reading the whole file to prove it sound would
make sniffing as slow as the file is large.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from deepva_watch.media import MediaKind

#: How much of a file sniffing reads. SMPTE 377 lets an MXF run-in push the header partition up to 64 KiB in, so the
#: head must reach that far; nothing else needs more than a few dozen bytes.
HEAD_BYTES = 64 * 1024

#: Fewer bytes than this cannot carry any signature we accept (JPEG's is the shortest at 3).
MIN_BYTES = 4

MIME_JPEG = "image/jpeg"
MIME_PNG = "image/png"
MIME_MP4 = "video/mp4"
MIME_MPEG = "video/mpeg"
MIME_MXF = "application/mxf"
MIME_QUICKTIME = "video/quicktime"


@dataclass(frozen=True)
class Sniffed:
    """The content is a type DeepVA accepts."""

    mime: str
    kind: MediaKind


@dataclass(frozen=True)
class Unsupported:
    """The content is not a type DeepVA accepts; ``reason`` is written to the log and the ledger as is."""

    reason: str


_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"
_MPEG_PACK_HEADER = b"\x00\x00\x01\xba"
_MPEG_SEQUENCE_HEADER = b"\x00\x00\x01\xb3"
# SMPTE 377 partition pack key up to the partition kind; the byte after it is 0x02 for the header partition.
_MXF_PARTITION_KEY = bytes.fromhex("060e2b34020501010d01020101")
_MXF_HEADER_PARTITION = 0x02

_TS_PACKET = 188
_M2TS_PACKET = 192  # Blu-ray / AVCHD: a 4-byte arrival timestamp before every 188-byte TS packet.
_TS_SYNC = 0x47
_TS_PACKETS_TO_CHECK = 4

# ISO base media (ISO/IEC 14496-12) major and compatible brands. Brands are four bytes, space padded.
_QUICKTIME_BRANDS = frozenset({b"qt  "})
_MP4_BRANDS = frozenset(
    {b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9", b"mp41", b"mp42", b"mp71",
     b"avc1", b"M4V ", b"M4VH", b"M4VP", b"dash", b"f4v ", b"f4p ", b"mmp4", b"MSNV", b"NDAS", b"XAVC", b"MP4 "}
)
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1", b"avif", b"avis"}
)
_AUDIO_BRANDS = frozenset({b"M4A ", b"M4B ", b"M4P "})
# Pre-ftyp QuickTime files (before QuickTime 6) open straight with one of these atoms.
_QUICKTIME_FIRST_ATOMS = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})


def sniff(path: Path) -> Sniffed | Unsupported:
    """Sniff a file on disk by its head.

    Only regular files are read: a FIFO or a device in a watch folder would block ``open``/``read`` forever, so the type
    is checked with ``os.stat`` first and the file is opened non-blocking and checked again (it may be swapped between
    the two calls). Raises ``OSError`` when the file cannot be read at all (it vanished, or permission is denied):
    that says nothing about its content, and the caller decides whether to retry.
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        return Unsupported(_not_a_regular_file(mode))
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    descriptor = os.open(path, flags)
    try:
        return sniff_descriptor(descriptor)
    finally:
        os.close(descriptor)


def sniff_descriptor(descriptor: int) -> Sniffed | Unsupported:
    """Sniff an open file by its head (read with ``pread``: the descriptor's position is left alone)."""
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        return Unsupported(_not_a_regular_file(mode))
    return sniff_bytes(_read_head(descriptor))


def sniff_bytes(head: bytes) -> Sniffed | Unsupported:
    """Sniff the first bytes of a file (pass at least :data:`HEAD_BYTES` when the file is that long)."""
    if not head:
        return Unsupported("file is empty")
    if len(head) < MIN_BYTES:
        return Unsupported(f"file is too short to be media ({len(head)} bytes)")

    if head.startswith(_JPEG):
        return Sniffed(MIME_JPEG, "image")
    if head.startswith(_PNG):
        return Sniffed(MIME_PNG, "image")
    if head.startswith(_MPEG_PACK_HEADER) or head.startswith(_MPEG_SEQUENCE_HEADER):
        return Sniffed(MIME_MPEG, "video")

    iso = _sniff_iso_base_media(head)
    if iso is not None:
        return iso
    # Text before the searching checks: a text file could by chance hold 'G' at every 188th byte, and naming it as
    # text is the more useful answer. Neither TS nor MXF can read as text (both carry control bytes early on).
    text = _describe_text(head)
    if text is not None:
        return Unsupported(text)
    if _is_transport_stream(head):
        # The supported list names MPEG as video/mpeg; transport streams carry the same codecs, so they go as that.
        return Sniffed(MIME_MPEG, "video")
    if _has_mxf_header_partition(head):
        return Sniffed(MIME_MXF, "video")
    return Unsupported(f"unrecognised content, first bytes {_hex_preview(head)}")


def _read_head(descriptor: int) -> bytes:
    """Read up to HEAD_BYTES; a short ``read`` is not the end of a regular file, so keep going until EOF."""
    chunks: list[bytes] = []
    offset = 0
    while offset < HEAD_BYTES:
        chunk = os.pread(descriptor, HEAD_BYTES - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _not_a_regular_file(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory, not a media file"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    return "is not a regular file"


def _sniff_iso_base_media(head: bytes) -> Sniffed | Unsupported | None:
    """MP4 and QuickTime share the box structure; the ``ftyp`` brands tell them (and HEIF images) apart."""
    if len(head) < 8:
        return None
    box_type = head[4:8]
    if box_type != b"ftyp":
        if box_type in _QUICKTIME_FIRST_ATOMS and _plausible_box_size(head):
            return Sniffed(MIME_QUICKTIME, "video")
        return None

    box_size = int.from_bytes(head[0:4], "big")
    major = head[8:12]
    compatible = {head[offset:offset + 4] for offset in range(16, min(box_size, len(head)) - 3, 4)}
    if major in _HEIF_BRANDS:
        return Unsupported("HEIF/AVIF images are not supported by DeepVA")
    if major in _QUICKTIME_BRANDS:
        return Sniffed(MIME_QUICKTIME, "video")
    if major in _MP4_BRANDS or major.startswith((b"3gp", b"3g2")):
        return Sniffed(MIME_MP4, "video")
    if major in _AUDIO_BRANDS:
        return Unsupported(f"MPEG-4 audio (brand {_brand(major)}) has no pictures for DeepVA to analyse")
    # Camera makers put their own major brand first and list the standard ones after it.
    if compatible & _QUICKTIME_BRANDS:
        return Sniffed(MIME_QUICKTIME, "video")
    if compatible & _MP4_BRANDS:
        return Sniffed(MIME_MP4, "video")
    if compatible & _HEIF_BRANDS:
        return Unsupported("HEIF/AVIF images are not supported by DeepVA")
    return Unsupported(f"ISO base media file with brand {_brand(major)} is not a supported video type")


def _plausible_box_size(head: bytes) -> bool:
    # 0 means "to end of file" and 1 means "64-bit size follows"; anything else must at least cover the header.
    size = int.from_bytes(head[0:4], "big")
    return size in (0, 1) or size >= 8


def _brand(brand: bytes) -> str:
    return repr(brand.decode("latin-1"))


def _is_transport_stream(head: bytes) -> bool:
    return _sync_repeats(head, first=0, stride=_TS_PACKET) or _sync_repeats(head, first=4, stride=_M2TS_PACKET)


def _sync_repeats(head: bytes, *, first: int, stride: int) -> bool:
    """A lone 0x47 is common in any binary; the same byte at every packet boundary is not."""
    offsets = [first + stride * n for n in range(_TS_PACKETS_TO_CHECK)]
    if offsets[-1] >= len(head):
        # A stream shorter than a few packets still counts when every boundary it has carries the sync byte.
        offsets = [offset for offset in offsets if offset < len(head)]
        if len(offsets) < 2:
            return False
    return all(head[offset] == _TS_SYNC for offset in offsets)


def _has_mxf_header_partition(head: bytes) -> bool:
    """The header partition key may follow a run-in of up to 64 KiB (SMPTE 377), so search rather than compare."""
    start = head.find(_MXF_PARTITION_KEY, 0, HEAD_BYTES + len(_MXF_PARTITION_KEY))
    while start != -1:
        kind_offset = start + len(_MXF_PARTITION_KEY)
        if kind_offset < len(head) and head[kind_offset] == _MXF_HEADER_PARTITION:
            return True
        start = head.find(_MXF_PARTITION_KEY, start + 1, HEAD_BYTES + len(_MXF_PARTITION_KEY))
    return False


def _describe_text(head: bytes) -> str | None:
    """Name text content so the reason tells a person what the file really is (a saved web page is the usual case)."""
    text = _decode_text(head)
    if text is None:
        return None
    stripped = text.lstrip("\ufeff \t\r\n")
    lowered = stripped[:256].lower()
    if lowered.startswith(("<!doctype html", "<html")) or "<html" in lowered:
        what = "HTML"
    elif lowered.startswith("<?xml") or lowered.startswith("<svg"):
        what = "SVG" if "<svg" in lowered else "XML"
    elif lowered.startswith(("{", "[")):
        what = "JSON"
    else:
        what = "text"
    first_line = stripped.splitlines()[0] if stripped else ""
    preview = first_line[:40].rstrip() + ("…" if len(first_line) > 40 else "")
    quoted = repr(preview) if preview else "blank lines"
    starts = f"starts with {quoted}" if preview else "only blank lines"
    return f"content is {what} ({starts}), not a supported media type"


def _decode_text(head: bytes) -> str | None:
    """Return the head as text when it reads as text: UTF-8 (or UTF-16 with a BOM) with no control bytes."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return head.decode("utf-16", errors="strict")[: len(head)]
        except UnicodeDecodeError:
            return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        # The head may end in the middle of a multi-byte character; only that tail may fail to decode.
        if error.start < len(head) - 3:
            return None
        text = head[: error.start].decode("utf-8")
    allowed_controls = {"\t", "\n", "\r", "\f"}
    if any((ord(char) < 0x20 and char not in allowed_controls) or ord(char) == 0x7F for char in text):
        return None
    return text


def _hex_preview(head: bytes, count: int = 8) -> str:
    shown = " ".join(f"{byte:02x}" for byte in head[:count])
    return shown + (" …" if len(head) > count else "")
