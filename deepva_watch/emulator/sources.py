"""Deciding whether a job source is acceptable, and what the emulator knows about it.

Each kind of source the contract lists has one branch here, so later features slot in without touching the rest:
fetching http(s) URLs would replace the URL branch's stand-in facts with the fetched file's, and on-prem installs would
accept local paths through a configured path mapping instead of rejecting them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from .probe import DEFAULT_DURATION, DEFAULT_FRAME_RATE

STORAGE_SCHEME = "storage://"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class SourceFacts:
    """What results are synthesised from. ``seed`` is derived from the content, so equal bytes give equal results."""

    media_type: str
    seed: bytes
    duration: float
    frame_rate: float


@dataclass(frozen=True)
class ResolvedSource:
    source: str
    facts: SourceFacts


class SourceRejected(ValueError):
    """The source is not something this server can process; the message is safe to return to the client."""


class StorageFacts(Protocol):
    def facts_for(self, url: str) -> SourceFacts | None:
        """Facts about an uploaded storage object, or None when no completed upload has that URL."""


def resolve_source(source: str, storage: StorageFacts) -> ResolvedSource:
    if source.startswith(STORAGE_SCHEME):
        facts = storage.facts_for(source)
        if facts is None:
            raise SourceRejected(f"unknown storage URL: {source}")
        return ResolvedSource(source, facts)
    if _is_local_path(source):
        raise SourceRejected(f"local paths are only accepted on on-prem installs: {source}")
    parts = urlsplit(source)
    if parts.scheme in ("http", "https") and parts.netloc:
        return ResolvedSource(source, _url_facts(source, parts.path))
    raise SourceRejected(f"unsupported source (expected storage://, http:// or https://): {source}")


def _is_local_path(source: str) -> bool:
    """POSIX paths, UNC shares, Windows drive paths and file:// URLs all name a disk the server would have to see."""
    if source.startswith(("/", "\\\\", "file:")):
        return True
    return len(source) > 2 and source[0].isalpha() and source[1] == ":" and source[2] in "\\/"


def _url_facts(url: str, path: str) -> SourceFacts:
    """URLs are not fetched yet, so the URL itself stands in for the content and the suffix for the media type."""
    media_type = "image" if path.lower().endswith(_IMAGE_SUFFIXES) else "video"
    return SourceFacts(
        media_type=media_type,
        seed=hashlib.sha256(url.encode("utf-8")).digest(),
        duration=0.0 if media_type == "image" else DEFAULT_DURATION,
        frame_rate=DEFAULT_FRAME_RATE,
    )
