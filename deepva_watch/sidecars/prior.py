"""What our own sidecars next to a file say was already done for it: a completed job, for which content, with which
modules. A daemon whose ledger is new (a new server, a standby taking over, a restored or lost ledger) reads them so
that it never pays DeepVA twice for a file whose results are already there.

The JSON sidecar is read first (only its head: it is written before the detailed results, which may be huge), the XMP
sidecar's ``dvw:`` provenance otherwise. Both are read the way every sidecar is read: through the folder's descriptor,
regular files only, without blocking, with a size cap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepva_watch.fsutil import FileTooLarge, NotARegularFile, read_regular_at
from deepva_watch.media import MediaKind
from deepva_watch.sidecars.folders import OpenFolder, sidecar_place
from deepva_watch.sidecars.json_sidecar import SCHEMA_VERSION
from deepva_watch.sidecars.model import SidecarSettings
from deepva_watch.sidecars.naming import UnsafeSidecarPath, sidecar_paths
from deepva_watch.sidecars.claim import XMP_READ_LIMIT
from deepva_watch.sidecars.rdf import NotAnXmpPacket
from deepva_watch.sidecars.text import json_safe
from deepva_watch.sidecars.xmp import parse_sidecar

#: The JSON sidecar's head (schema, asset, job, summary) comes before this marker, within this many bytes.
_DETAILED_MARKER = b',\n"detailed_results": ['
HEAD_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True)
class PriorResult:
    """A completed job our sidecars record for a file."""

    job_id: str
    source_hash: str
    modules: Mapping[str, Any]
    xmp: Path | None
    json: Path | None

    def covers(self, content_hash: str, modules: Mapping[str, Any]) -> bool:
        """The same content analysed with the same modules and options."""
        return self.source_hash == content_hash and _normal(self.modules) == _normal(modules)


def find_prior_result(media_path: Path, *, watch_root: Path, settings: SidecarSettings,
                      kind: MediaKind) -> PriorResult | None:
    """The completed job our sidecars for ``media_path`` record, or None (none there, not ours, not completed,
    unreadable: the file is then processed as usual)."""
    if not (settings.json or settings.xmp):
        return None
    try:
        xmp_path, json_path = sidecar_paths(media_path, watch_root=watch_root, settings=settings, kind=kind)
        with sidecar_place(media_path, watch_root=watch_root, settings=settings) as place:
            folder = place.sidecars
            from_json = _from_json(folder, json_path.name) if settings.json else None
            from_xmp = _from_xmp(folder, xmp_path.name, media_path.name) if settings.xmp else None
    except (OSError, UnsafeSidecarPath):
        return None
    found = from_json or from_xmp
    if found is None:
        return None
    job_id, source_hash, modules = found
    if from_json and from_xmp and from_xmp[0] == job_id:
        modules = from_xmp[2]  # the XMP keeps the modules as configured; the JSON keeps DeepVA's echo of them
    return PriorResult(job_id, source_hash, modules,
                       folder.path_of(xmp_path.name) if from_xmp else None,
                       folder.path_of(json_path.name) if from_json else None)


def _from_json(folder: OpenFolder, name: str) -> tuple[str, str, Mapping[str, Any]] | None:
    data = _read(folder, name, HEAD_LIMIT, whole=False)
    if data is None:
        return None
    end = data.find(_DETAILED_MARKER)
    try:
        head = json.loads(data[:end] + b"}") if end > 0 else json.loads(data)
    except ValueError:
        return None
    if not isinstance(head, dict) or head.get("schema") != SCHEMA_VERSION:
        return None
    asset, job = head.get("asset"), head.get("job")
    if not isinstance(asset, dict) or not isinstance(job, dict) or job.get("state") != "completed":
        return None
    job_id, source_hash, modules = job.get("id"), asset.get("hash"), job.get("modules")
    if not isinstance(job_id, str) or not isinstance(source_hash, str) or not isinstance(modules, dict):
        return None
    return job_id, source_hash, modules


def _from_xmp(folder: OpenFolder, name: str, media_name: str) -> tuple[str, str, Mapping[str, Any]] | None:
    """An XMP sidecar is written only for a completed job; ours names its media file, the job and the modules."""
    data = _read(folder, name, XMP_READ_LIMIT, whole=True)
    if data is None:
        return None
    try:
        sidecar = parse_sidecar(data)
    except NotAnXmpPacket:
        return None
    job_id, source_hash = sidecar.provenance("JobId"), sidecar.provenance("SourceHash")
    if not job_id or not source_hash or sidecar.source_name != media_name:
        return None
    try:
        modules = json.loads(sidecar.provenance("Modules") or "")
    except ValueError:
        return None
    return (job_id, source_hash, modules) if isinstance(modules, dict) else None


def _read(folder: OpenFolder, name: str, limit: int, *, whole: bool) -> bytes | None:
    try:
        return read_regular_at(folder.fd, name, limit=limit, head=not whole)
    except (NotARegularFile, FileTooLarge, OSError):
        return None


def _normal(modules: Mapping[str, Any]) -> str:
    return json.dumps(json_safe(modules), sort_keys=True)
