"""What each tool shows of a sidecar, read the way that tool reads it.

darktable and digiKam read XMP through exiv2, and exiv2's XMP parser is Adobe's XMP Toolkit, which Lightroom uses too:
those three are read here with the ``exiv2`` program. Immich reads with ExifTool (exiftool-vendored), merging the
media file's tags with the sidecar's, the sidecar's winning. The rules that pick among the keyword fields follow each
tool's source (darktable ``src/common/exif.cc``, digiKam ``DMetadata::getItemTagsPath``, Immich
``MetadataService.getTagList``) and, for Lightroom, its documented behaviour: a ``dc:subject`` value that names no level
of a hierarchical keyword is shown as a top-level keyword.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import require_program

KeywordPath = tuple[str, ...]

DC_SUBJECT = "Xmp.dc.subject"
LR_HIERARCHICAL = "Xmp.lr.hierarchicalSubject"
DIGIKAM_TAGS = "Xmp.digiKam.TagsList"
MS_KEYWORDS = "Xmp.MicrosoftPhoto.LastKeywordXMP"


def exiv2_read(path: Path) -> dict[str, Any]:
    """``exiv2 -PXkyct``: every XMP key with its value, arrays as lists (exiv2 prints them joined with ', ')."""
    exiv2 = require_program("exiv2")
    completed = subprocess.run([exiv2, "-PXkyct", str(path)], capture_output=True, timeout=60)
    assert completed.returncode == 0, completed.stderr.decode("utf-8", "replace")
    values: dict[str, Any] = {}
    for line in completed.stdout.decode("utf-8").splitlines():
        key, kind, count, *rest = line.split(None, 3)
        text = rest[0] if rest else ""
        if kind in ("XmpBag", "XmpSeq"):
            items = text.split(", ") if text else []
            assert len(items) == int(count), f"{key}: an item holds ', ', which this reader cannot split"
            values[key] = items
        else:
            values[key] = text
    return values


def exiftool_plain(path: Path) -> dict[str, Any]:
    """ExifTool's tags without group names, as exiftool-vendored hands them to Immich."""
    exiftool = require_program("exiftool")
    completed = subprocess.run([exiftool, "-j", "-struct", "-TagsList", "-HierarchicalSubject", "-Keywords",
                                str(path)], capture_output=True, check=True, timeout=60)
    found: dict[str, Any] = json.loads(completed.stdout.decode("utf-8"))[0]
    return found


def _paths(values: list[str], separator: str) -> set[KeywordPath]:
    return {tuple(value.split(separator)) for value in values}


def darktable_keywords(xmp: dict[str, Any]) -> set[KeywordPath]:
    """``lr:hierarchicalSubject`` when present, else ``dc:subject``; ``|`` separates levels."""
    values = xmp[LR_HIERARCHICAL] if LR_HIERARCHICAL in xmp else xmp.get(DC_SUBJECT, [])
    return _paths(values, "|")


def digikam_keywords(xmp: dict[str, Any]) -> set[KeywordPath]:
    """``digiKam:TagsList``, else Windows' ``LastKeywordXMP``, else ``lr:hierarchicalSubject``, else ``dc:subject``."""
    for key in (DIGIKAM_TAGS, MS_KEYWORDS):
        if xmp.get(key):
            return _paths(xmp[key], "/")
    if xmp.get(LR_HIERARCHICAL):
        return _paths([value.replace("|", "/") for value in xmp[LR_HIERARCHICAL]], "/")
    return _paths(xmp.get(DC_SUBJECT, []), "/")


def lightroom_keywords(xmp: dict[str, Any]) -> set[KeywordPath]:
    """The hierarchical keywords, and each ``dc:subject`` value that names no level of them as a top-level one."""
    hierarchical = _paths(xmp.get(LR_HIERARCHICAL, []), "|")
    levels = {part for path in hierarchical for part in path}
    return hierarchical | {(value,) for value in xmp.get(DC_SUBJECT, []) if value not in levels}


def immich_keywords(media: dict[str, Any], sidecar: dict[str, Any] | None) -> set[KeywordPath]:
    """``TagsList``, else ``HierarchicalSubject`` (``|`` to ``/``, a ``/`` inside a level to ``|``), else IPTC
    ``Keywords``, from the media file's tags overridden by the sidecar's; never ``dc:subject``. ``/`` separates levels.
    """
    merged = {**media, **(sidecar or {})}

    def listed(key: str) -> list[str]:
        value = merged.get(key)
        return [] if value is None else [str(item) for item in (value if isinstance(value, list) else [value])]

    if listed("TagsList"):
        tags = listed("TagsList")
    elif listed("HierarchicalSubject"):
        tags = ["/".join(part.replace("/", "|") for part in value.split("|")) for value in listed("HierarchicalSubject")]
    else:
        tags = listed("Keywords")
    return _paths(tags, "/")


def shown_by_each_tool(sidecar: Path, media: Path | None = None) -> dict[str, set[KeywordPath]]:
    """The keywords darktable, digiKam, Immich and Lightroom would show for a file with this sidecar."""
    xmp = exiv2_read(sidecar)
    media_tags = exiftool_plain(media) if media is not None else {}
    return {
        "darktable": darktable_keywords(xmp),
        "digiKam": digikam_keywords(xmp),
        "Immich": immich_keywords(media_tags, exiftool_plain(sidecar)),
        "Lightroom": lightroom_keywords(xmp),
    }


def field_paths(xmp: dict[str, Any]) -> dict[str, set[KeywordPath]]:
    """Each keyword field's keywords as paths; ``dc:subject`` as one-level paths of its values."""
    return {
        "dc:subject": {(value,) for value in xmp.get(DC_SUBJECT, [])},
        "lr:hierarchicalSubject": _paths(xmp.get(LR_HIERARCHICAL, []), "|"),
        "digiKam:TagsList": _paths(xmp.get(DIGIKAM_TAGS, []), "/"),
    }


_REGION = re.compile(r"Xmp\.mwg-rs\.Regions/mwg-rs:RegionList\[(\d+)\]/(?:mwg-rs:Area/stArea:(\w+)|mwg-rs:(Name|Type))$")


def exiv2_regions(xmp: dict[str, Any]) -> dict[str, dict[str, str]]:
    """MWG face regions as exiv2 hands them to digiKam: name → Type and area (x, y, w, h, unit)."""
    by_index: dict[str, dict[str, str]] = {}
    for key, value in xmp.items():
        match = _REGION.match(key)
        if match:
            index, area_field, struct_field = match.groups()
            by_index.setdefault(index, {})[area_field or struct_field] = value
    return {fields.pop("Name"): fields for fields in by_index.values()}


_MARKER = re.compile(r"Xmp\.xmpDM\.Tracks\[(\d+)\]/xmpDM:(?:markers\[(\d+)\]/xmpDM:(\w+)|(trackName|frameRate))$")


def exiv2_tracks(xmp: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``xmpDM:Tracks`` as exiv2 reads them: track name → frame rate and markers (start, duration, name)."""
    tracks: dict[str, dict[str, Any]] = {}
    for key, value in xmp.items():
        match = _MARKER.match(key)
        if match:
            track, marker, marker_field, track_field = match.groups()
            entry = tracks.setdefault(track, {"markers": {}})
            if track_field:
                entry[track_field] = value
            else:
                entry["markers"].setdefault(int(marker), {})[marker_field] = value
    result = {}
    for entry in tracks.values():
        markers = [entry["markers"][index] for index in sorted(entry["markers"])]
        result[entry["trackName"]] = {
            "frameRate": entry.get("frameRate"),
            "markers": [(int(m["startTime"]), int(m["duration"]), m["name"]) for m in markers],
        }
    return result
