"""``url``: ``url_prefix`` plus the path relative to the folder, for sites that publish their media over HTTP.

Each segment is encoded on its own (``safe=""``), so ``#``, ``?`` and ``%`` in a name stay part of that name and the
``/`` between segments stays a separator; non-ASCII goes as UTF-8, as browsers and web servers expect.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from deepva_watch.config import FolderConfig
from deepva_watch.sources.paths import SourceMappingError, checked_path, relative_parts


class UrlSource:
    name = "url"
    uploads = False

    def job_source(self, folder: FolderConfig, path: Path, stored_url: str | None) -> str:
        if not folder.url_prefix:
            raise SourceMappingError(f"folder {str(folder.path)!r} has source 'url' but no url_prefix")
        rest = relative_parts(folder, checked_path(folder, path))
        return folder.url_prefix.rstrip("/") + "/" + "/".join(quote(segment, safe="") for segment in rest)

    def describe(self, folder: FolderConfig, sample: Path) -> str:
        return f"url: {sample} -> {self.job_source(folder, sample, None)}"
