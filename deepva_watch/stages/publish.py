"""PUBLISH: write what DeepVA found next to the media, as XMP and JSON sidecars; REPORT: for a job DeepVA failed or
stopped, a JSON sidecar that says why, and no XMP (an XMP without results would read as "nothing found").

Results are written only for the version of the file they describe: if the file changed while DeepVA worked on it,
this version is superseded and the new one is published in its turn. The finished job comes from the ledger, where
the tracker left it; a detailed-results page per hundred segments is all that is held in memory meanwhile.
"""

from __future__ import annotations

from datetime import datetime, timezone

import structlog

from deepva_watch import __version__
from deepva_watch.config import FolderConfig
from deepva_watch.deepva import DeepVAError, Job
from deepva_watch.flow import Advance, Fail, Outcome, Services, gone
from deepva_watch.flow.policy import changed_outcome, outcome_for
from deepva_watch.ledger import Asset
from deepva_watch.media import MediaKind
from deepva_watch.media.files import VersionChanged, descriptor_path, open_version
from deepva_watch.media.probe import probe
from deepva_watch.sidecars import (
    Provenance,
    SidecarSettings,
    UnsafeSidecarPath,
    WrittenSidecars,
    publish_failure,
    publish_results,
)
from deepva_watch.states import State

log = structlog.get_logger("deepva_watch.publish")

DETAILED_PAGE_SIZE = 100


def sidecar_settings(folder: FolderConfig) -> SidecarSettings:
    sidecars = folder.sidecars
    return SidecarSettings(xmp=sidecars.xmp, json=sidecars.json, naming=sidecars.naming, output_dir=sidecars.output_dir,
                           digikam_tags_list=sidecars.digikam_tags_list, follow_links=folder.follow_symlinks)


def publish(services: Services, asset: Asset) -> Outcome:
    """``completed`` → ``published``, with the job's results in both sidecars."""
    outcome = _write(services, asset, completed=True)
    if not isinstance(outcome, WrittenSidecars):
        return outcome
    config = services.config
    owed = (config.delete_storage_after_completion and asset.storage_id) or \
        (config.delete_job_after_publish and asset.job_id)
    return Advance(State.PUBLISHED, {**_paths(outcome), "published_at": services.clock.now(), "job_snapshot": None,
                                     "cleanup_pending": int(bool(owed))})


def report(services: Services, asset: Asset) -> Outcome:
    """``job_failed`` → ``failed``, with DeepVA's errors in the JSON sidecar."""
    outcome = _write(services, asset, completed=False)
    if not isinstance(outcome, WrittenSidecars):
        return outcome
    return Fail(f"DeepVA job {asset.job_state or 'failed'}: " + "; ".join(asset.errors), retryable=False,
                changes={**_paths(outcome), "job_snapshot": None})


def _write(services: Services, asset: Asset, *, completed: bool) -> Outcome | WrittenSidecars:
    folder = services.folder(asset)
    try:
        with open_version(folder.path.absolute(), asset.relpath, follow_symlinks=folder.follow_symlinks,
                          size=asset.size, mtime_ns=asset.mtime_ns, identity=asset.identity) as descriptor:
            written = write_sidecars(services, asset, completed=completed, descriptor=descriptor)
    except VersionChanged as changed:
        return changed_outcome(changed, "the file changed while DeepVA worked on it")
    except FileNotFoundError:
        return gone("the file disappeared before its results were written")
    except (DeepVAError, OSError) as error:
        return outcome_for(error)
    except UnsafeSidecarPath as error:  # a path that would leave its folder: never written, a person must look
        return Fail(f"refused to write sidecars: {error}")
    for note in written.notes:
        log.warning("sidecar_note", note=note)
    return written


def write_sidecars(services: Services, asset: Asset, *, completed: bool, descriptor: int) -> WrittenSidecars:
    """The sidecars of the version open at ``descriptor`` (probed through it, so no other file can stand in)."""
    folder = services.folder(asset)
    job = Job.loads(asset.job_snapshot) if asset.job_snapshot else services.client.get_job(asset.job_id or "")
    kind: MediaKind = "image" if asset.kind == "image" else "video"
    media = probe(descriptor_path(descriptor), asset.mime or "", kind, pass_fds=(descriptor,))
    root, settings, provenance = folder.path.absolute(), sidecar_settings(folder), _provenance(services, asset)
    if completed:
        segments = services.client.iter_detailed_results(job.id, page_size=DETAILED_PAGE_SIZE)
        return publish_results(services.path_of(asset), job=job, media=media, segments=segments, watch_root=root,
                               settings=settings, provenance=provenance)
    return publish_failure(services.path_of(asset), job=job, errors=asset.errors, media=media, watch_root=root,
                           settings=settings, provenance=provenance)


def _provenance(services: Services, asset: Asset) -> Provenance:
    return Provenance(
        job_id=asset.job_id or "",
        modules=dict(services.folder(asset).modules),
        processed_at=datetime.fromtimestamp(services.clock.now(), timezone.utc),
        daemon_version=__version__,
        source_hash=asset.content_hash or "",
        source_size=asset.size,
        source_mtime=datetime.fromtimestamp(asset.mtime_ns / 1e9, timezone.utc),
        asset_id=asset.asset_id,
    )


def _paths(written: WrittenSidecars) -> dict[str, str | None]:
    return {"xmp_path": str(written.xmp) if written.xmp else None,
            "json_path": str(written.json) if written.json else None}
