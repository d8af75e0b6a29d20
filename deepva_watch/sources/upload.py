"""``upload``: the file is uploaded to DeepVA storage, and its storage URL is the job's source (DeepVA Cloud)."""

from __future__ import annotations

from pathlib import Path

from deepva_watch.config import FolderConfig
from deepva_watch.sources.paths import SourceMappingError


class UploadSource:
    name = "upload"
    uploads = True

    def job_source(self, folder: FolderConfig, path: Path, stored_url: str | None) -> str:
        if not stored_url:
            raise SourceMappingError(f"{str(path)!r} has not been uploaded to DeepVA storage yet")
        return stored_url

    def describe(self, folder: FolderConfig, sample: Path) -> str:
        return (f"upload: {sample} -> uploaded to DeepVA storage folder {folder.storage_folder!r}; "
                f"its storage URL is the source")
