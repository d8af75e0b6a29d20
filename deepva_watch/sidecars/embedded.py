"""The media file's own keywords, copied into the XMP sidecar when we create it.

Several tools read a sidecar instead of the file's own metadata (Immich: a sidecar's keyword fields override the
file's), so a sidecar holding only our keywords would hide the ones the agency or photographer embedded. When no
sidecar exists yet we therefore read them from the file: IPTC ``Keywords`` and the embedded XMP packet's
``dc:subject``, ``lr:hierarchicalSubject`` and ``digiKam:TagsList`` (JPEG), the XMP ``iTXt`` chunk (PNG).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from PIL import Image, IptcImagePlugin, JpegImagePlugin, UnidentifiedImageError

from deepva_watch.fsutil import O_CLOEXEC, O_NOFOLLOW
from deepva_watch.sidecars.keywords import KeywordFields
from deepva_watch.sidecars.rdf import read_properties

_FORMATS = ("JPEG", "PNG")
_IPTC_KEYWORDS = (2, 25)
_IPTC_CHARSET = (1, 90)
_IPTC_UTF8 = b"\x1b%G"
_FLAGS = os.O_RDONLY | os.O_NONBLOCK | O_CLOEXEC


def read_embedded_keywords(path: Path) -> KeywordFields:
    """The keyword fields embedded in a JPEG or PNG; empty for any other file.

    Opened without blocking (a FIFO put in the file's place cannot hang the worker) and read only as far as Pillow's
    header parsing goes. Raises OSError, or what Pillow and the XML parser raise for a damaged file.
    """
    return _read(os.open(path, _FLAGS))


def read_embedded_keywords_at(dir_fd: int, name: str) -> KeywordFields:
    """:func:`read_embedded_keywords` for the file ``name`` in the open folder ``dir_fd``, never through a link."""
    return _read(os.open(name, _FLAGS | O_NOFOLLOW, dir_fd=dir_fd))


def _read(descriptor: int) -> KeywordFields:
    with os.fdopen(descriptor, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            return KeywordFields()
        try:
            image = Image.open(stream, formats=_FORMATS)
        except UnidentifiedImageError:
            return KeywordFields()
        with image:
            found = KeywordFields()
            if isinstance(image, JpegImagePlugin.JpegImageFile):
                found.subject.extend(_iptc_keywords(IptcImagePlugin.getiptcinfo(image) or {}))
            packet = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")  # PNG's key before Pillow 11
            if isinstance(packet, str):
                packet = packet.encode("utf-8")
            if isinstance(packet, bytes) and (packet := packet.strip(b"\x00 \t\r\n")):  # padding is allowed
                found.extend(KeywordFields.of(read_properties(packet).properties))
            return found


def _iptc_keywords(iptc: dict[tuple[int, int], bytes | list[bytes]]) -> list[str]:
    """IPTC IIM text is UTF-8 when dataset 1:90 says so, and in practice often when it does not; else Latin-1."""
    values = iptc.get(_IPTC_KEYWORDS, [])
    raw = [values] if isinstance(values, bytes) else list(values)
    utf8 = iptc.get(_IPTC_CHARSET) == _IPTC_UTF8
    keywords = []
    for value in raw:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = value.decode("utf-8", "replace") if utf8 else value.decode("latin-1")
        if text.strip():
            keywords.append(text.strip())
    return keywords
