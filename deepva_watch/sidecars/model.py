"""The values the publish stage hands to the sidecar writers, and what it gets back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

Naming = Literal["auto", "name", "stem"]


@dataclass(frozen=True)
class SidecarSettings:
    """Per watched folder: which sidecars to write and where.

    ``naming``: ``name`` gives ``IMG_1.jpg.xmp`` (darktable, digiKam), ``stem`` gives ``clip.xmp`` (the XMP
    specification, Adobe's video tools); ``auto`` picks ``name`` for images and ``stem`` for video.
    ``output_dir``: None writes next to the media; otherwise into a tree under it that mirrors the watched root, for
    shares the daemon may only read.
    ``digikam_tags_list``: also write ``digiKam:TagsList`` into XMP sidecars that have none. Where one exists, the
    media file embeds one or a keyword holds a ``/``, it is written anyway (see ``keywords``).
    ``follow_links``: folders below the watched root may be symbolic links (the folder is watched with
    ``follow_symlinks``); otherwise a link on the way refuses the write. The ``output_dir`` tree never follows one.
    """

    xmp: bool = True
    json: bool = True
    naming: Naming = "auto"
    output_dir: Path | None = None
    digikam_tags_list: bool = False
    follow_links: bool = False


@dataclass(frozen=True)
class Provenance:
    """Where a result came from; written into both sidecars so that a re-run can find and replace exactly our data."""

    job_id: str
    modules: Mapping[str, Any]
    processed_at: datetime
    daemon_version: str
    source_hash: str
    source_size: int
    source_mtime: datetime
    asset_id: str


@dataclass(frozen=True)
class WrittenSidecars:
    """The files actually written (None: not wanted or not written), and reasons worth a log line."""

    xmp: Path | None
    json: Path | None
    notes: tuple[str, ...] = ()
