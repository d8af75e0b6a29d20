"""Deciding whether a job source is acceptable, and what the emulator knows about it.

Each kind of source the contract lists has one branch here:

* ``storage://…`` — an uploaded object; facts come from the stored bytes.
* local paths (POSIX, UNC, drive letters, ``file:``) — refused with 400 unless the emulator runs as an on-prem install
  (``EmulatorConfig.onprem_roots``, see :mod:`.onprem`); then the mapped file is analysed like an upload.
* ``http(s)://`` on loopback — downloaded when the job is created (see :mod:`.fetch`); a download that fails does not
  refuse the job, as a real server accepts the job first and fails it later: the job is created and ends ``failed``
  with the reason in ``errors``.
* ``http(s)://`` anywhere else — accepted but never fetched (the emulator must not reach out); the URL string stands
  in for the content and its suffix for the media type.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from .fetch import FetchFailed, fetch_to_file, is_loopback_host
from .onprem import OnPremRoots, PathNotReadable
from .probe import DEFAULT_DURATION, DEFAULT_FRAME_RATE, SNIFF_BYTES, fingerprint, media_type_of, probe_video

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
    """``problem`` is set when the source was accepted but cannot be processed; the job then ends ``failed``."""

    source: str
    facts: SourceFacts
    problem: str | None = None


class SourceRejected(ValueError):
    """The source is not something this server can process; the message is safe to return to the client."""


class StorageFacts(Protocol):
    def facts_for(self, url: str) -> SourceFacts | None:
        """Facts about an uploaded storage object, or None when no completed upload has that URL.

        May raise :class:`SourceRejected` with a more specific reason (an upload that failed).
        """


@dataclass(frozen=True)
class FetchSettings:
    directory: Path
    max_bytes: int
    timeout: float


class SourceResolver:
    def __init__(self, storage: StorageFacts, onprem: OnPremRoots, fetching: FetchSettings) -> None:
        self._storage = storage
        self._onprem = onprem
        self._fetching = fetching

    def resolve(self, source: str) -> ResolvedSource:
        if source.startswith(STORAGE_SCHEME):
            facts = self._storage.facts_for(source)
            if facts is None:
                raise SourceRejected(f"unknown storage URL: {source}")
            return ResolvedSource(source, facts)
        if _is_local_path(source):
            if not self._onprem:
                raise SourceRejected(f"local paths are only accepted on on-prem installs: {source}")
            if source.startswith("file:"):
                raise SourceRejected(f"file: URLs are not supported, send the path itself: {source}")
            try:
                return ResolvedSource(source, file_facts(self._onprem.local_file(source)))
            except PathNotReadable as refusal:
                raise SourceRejected(str(refusal)) from None
        parts = urlsplit(source)
        if parts.scheme in ("http", "https") and parts.netloc:
            if is_loopback_host(parts.hostname):
                return self._fetched(source, parts.path)
            return ResolvedSource(source, _url_facts(source, parts.path))
        raise SourceRejected(f"unsupported source (expected storage://, http:// or https://): {source}")

    def _fetched(self, url: str, path: str) -> ResolvedSource:
        settings = self._fetching
        try:
            fetched = fetch_to_file(url, settings.directory, max_bytes=settings.max_bytes, timeout=settings.timeout)
        except FetchFailed as failure:
            return ResolvedSource(url, _url_facts(url, path), problem=f"could not fetch source {url}: {failure}")
        try:
            return ResolvedSource(url, file_facts(fetched))
        finally:
            fetched.unlink(missing_ok=True)


def file_facts(path: Path) -> SourceFacts:
    """Facts of a file on this machine: magic bytes decide image or video, MediaInfo the video's duration."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    seed = fingerprint(path)
    if media_type_of(head) == "image":
        return SourceFacts("image", seed, 0.0, DEFAULT_FRAME_RATE)
    video = probe_video(path)
    return SourceFacts("video", seed, video.duration, video.frame_rate)


def _is_local_path(source: str) -> bool:
    """POSIX paths, UNC shares, Windows drive paths and file:// URLs all name a disk the server would have to see."""
    if source.startswith(("/", "\\\\", "file:")):
        return True
    return len(source) > 2 and source[0].isalpha() and source[1] == ":" and source[2] in "\\/"


def _url_facts(url: str, path: str) -> SourceFacts:
    """Unfetched URLs: the URL itself stands in for the content and the suffix for the media type."""
    media_type = "image" if path.lower().endswith(_IMAGE_SUFFIXES) else "video"
    return SourceFacts(
        media_type=media_type,
        seed=hashlib.sha256(url.encode("utf-8")).digest(),
        duration=0.0 if media_type == "image" else DEFAULT_DURATION,
        frame_rate=DEFAULT_FRAME_RATE,
    )
