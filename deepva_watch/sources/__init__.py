"""What DeepVA is given as a job's source for a file: one :class:`Source` per ``source`` setting of a folder.

Uploading suits DeepVA Cloud; an on-prem DeepVA reads the share itself (``local_path``); some sites publish their
media over HTTP (``url``). A new kind of source is a class here and its name in :data:`SOURCES` (and in the
config's ``source`` choices).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from deepva_watch.config import FolderConfig
from deepva_watch.sources.local_path import LocalPathSource
from deepva_watch.sources.paths import SourceMappingError
from deepva_watch.sources.upload import UploadSource
from deepva_watch.sources.url import UrlSource


class Source(Protocol):
    name: str
    uploads: bool
    """The file goes to DeepVA storage first, and the job gets the storage URL."""

    def job_source(self, folder: FolderConfig, path: Path, stored_url: str | None) -> str:
        """The source string for ``path`` (absolute, inside the folder); raises :class:`SourceMappingError` for a
        file that cannot be given to DeepVA as configured."""
        ...

    def describe(self, folder: FolderConfig, sample: Path) -> str:
        """One line for ``check-config`` and ``doctor``: what a sample file would be sent as."""
        ...


SOURCES: dict[str, Source] = {source.name: source for source in (UploadSource(), LocalPathSource(), UrlSource())}


def source_for(folder: FolderConfig) -> Source:
    return SOURCES[folder.source]


def job_source(folder: FolderConfig, path: Path, stored_url: str | None = None) -> str:
    return source_for(folder).job_source(folder, path, stored_url)


def describe_source(folder: FolderConfig, sample_relpath: str = "example/clip.mxf") -> str:
    """What a sample file in this folder would be sent as, so that an operator sees a mapping is right first."""
    sample = Path(folder.path) / sample_relpath
    try:
        return source_for(folder).describe(folder, sample)
    except SourceMappingError as error:
        return f"{folder.source}: {sample} -> error: {error}"


__all__ = ["SOURCES", "Source", "SourceMappingError", "describe_source", "job_source", "source_for"]
