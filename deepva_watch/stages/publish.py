"""PUBLISH: write what DeepVA found next to the media, as XMP and JSON sidecars.

Results are written only for the version of the file they describe: if the file changed or was replaced while DeepVA
worked on it, this version is superseded and the new one will be published in its turn. A failed job gets a JSON
sidecar that says so (with DeepVA's errors) and no XMP, since an XMP without results would look like "nothing found".
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from typing import Any

import structlog

from deepva_watch import __version__
from deepva_watch import ledger as states
from deepva_watch.config import FolderConfig
from deepva_watch.deepva import DeepVAError
from deepva_watch.ledger import Asset
from deepva_watch.media.probe import probe
from deepva_watch.pipeline import Advance, Fail, Outcome, Retry, Services, gone
from deepva_watch.sidecars import (
    Provenance,
    SidecarSettings,
    UnsafeSidecarPath,
    WrittenSidecars,
    publish_failure,
    publish_results,
)
from deepva_watch.stages.failures import outcome_for
from deepva_watch.stages.publish_process import PublisherGone, SidecarJob

log = structlog.get_logger("deepva_watch.publish")

#: Segments per page of detailed results: one page is all that is held in memory while sidecars are written.
DETAILED_PAGE_SIZE = 100


def sidecar_settings(folder: FolderConfig) -> SidecarSettings:
    sidecars = folder.sidecars
    return SidecarSettings(xmp=sidecars.xmp, json=sidecars.json, naming=sidecars.naming, output_dir=sidecars.output_dir)


def home_state(asset: Asset) -> str:
    """Where a publishing row returns on Wait/Retry: the job's outcome decides which kind of sidecar it gets."""
    return states.JOB_FAILED if asset.job_state in ("failed", "stopped") else states.COMPLETED


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


def _still_current(services: Services, asset: Asset) -> bool:
    """True if the file on disk is still the version DeepVA looked at and no newer version has been recorded."""
    info = os.stat(asset.path, follow_symlinks=False)
    if (info.st_size, info.st_mtime_ns) != (asset.size, asset.mtime_ns):
        services.ledger.observe(asset.folder, asset.relpath, info.st_size, info.st_mtime_ns, services.clock.now())
        return False
    return services.ledger.versions(asset.folder, asset.relpath)[-1].id == asset.id


def start_writes(services: Services, assets: list[Asset]) -> None:
    """The stage's prefetch: with a publishing process, hand it every claimed row's sidecars at once, so that it works
    on all of them while this worker collects the answers in turn. One at a time, each answer waited for a turn at the
    daemon's interpreter lock before the next file was sent, and under a backlog the child idled between them.

    A row whose start fails here is simply started again by its step, which then meets the error itself. A row handed
    back unfinished (the daemon stopping) may still get its sidecars from the child; the next publish of it writes the
    same content again, as after a crash."""
    if services.publisher is None:
        return
    started: dict[int, Outcome | Callable[[], WrittenSidecars]] = {}
    for asset in assets:
        try:
            started[asset.id] = _start(services, asset)
        except Exception:  # the step starts it again and handles what that raises
            continue
    _batch.started = started


#: What :func:`start_writes` started for the current batch of this worker thread, by row id.
_batch = threading.local()


def publish(services: Services, asset: Asset) -> Outcome:
    try:
        started: Outcome | Callable[[], WrittenSidecars] | None = getattr(_batch, "started", {}).pop(asset.id, None)
        if started is None:
            started = _start(services, asset)
        if not callable(started):
            return started
        written = started()
    except FileNotFoundError:
        return gone("the file disappeared before its results were written")
    except (DeepVAError, OSError) as error:
        return outcome_for(error)
    except PublisherGone as error:  # counted: a file that keeps crashing the publishing process ends as failed
        return Retry(str(error))
    except UnsafeSidecarPath as error:  # a path that would leave its folder: never written, a person must look
        return Fail(f"refused to write sidecars: {error}")
    for note in written.notes:
        log.warning("sidecar_note", note=note)
    paths = _paths(written)
    if asset.job_state == "completed":
        pending = int(any(_deletions_owed(services, asset)))
        return Advance(states.PUBLISHED, {**paths, "published_at": services.clock.now(), "cleanup_pending": pending},
                       then=partial(clean_up, services, asset) if pending else None)
    return Fail("DeepVA job " + (asset.job_state or "failed") + ": " + "; ".join(asset.errors), retryable=False, changes=paths)


def _start(services: Services, asset: Asset) -> Outcome | Callable[[], WrittenSidecars]:
    """Check that the row still describes the file and start writing its sidecars: an outcome if there is nothing to
    write, otherwise what waits for (or, in-process, does) the writing."""
    if not _still_current(services, asset):
        return Advance(states.SUPERSEDED, {"last_error": "the file changed while DeepVA worked on it"})
    folder = services.folder(asset)
    job = SidecarJob(
        media_path=asset.path, job=services.jobs.pop(asset.asset_id), job_id=asset.job_id or "",
        completed=asset.job_state == "completed", errors=tuple(asset.errors), mime=asset.mime or "",
        kind=asset.kind or "video", watch_root=folder.path.absolute(),  # type: ignore[arg-type]
        settings=sidecar_settings(folder), provenance=_provenance(services, asset),
    )
    if services.publisher is not None:
        pending: Callable[[], WrittenSidecars] = services.publisher.submit(job).result
        return pending
    return partial(write_sidecars, services.client, job)


def write_sidecars(client: Any, job: SidecarJob) -> WrittenSidecars:
    """The part of publishing that needs no ledger: fetch what is missing, probe the media, write the sidecars. Runs
    in the daemon, or in its publishing process (:mod:`deepva_watch.stages.publish_process`)."""
    found = job.job or client.get_job(job.job_id)
    media = probe(job.media_path, job.mime, job.kind)
    if job.completed:
        segments = client.iter_detailed_results(found.id, page_size=DETAILED_PAGE_SIZE)
        return publish_results(job.media_path, job=found, media=media, segments=segments, watch_root=job.watch_root,
                               settings=job.settings, provenance=job.provenance)
    return publish_failure(job.media_path, job=found, errors=job.errors, media=media, watch_root=job.watch_root,
                           settings=job.settings, provenance=job.provenance)


def _deletions_owed(services: Services, asset: Asset) -> tuple[bool, bool]:
    """Whether this row's storage copy and its job are to be deleted, by the settings and what the row has."""
    config = services.config
    return (bool(config.delete_storage_after_completion and asset.storage_id),
            bool(config.delete_job_after_publish and asset.job_id))


def clean_up(services: Services, asset: Asset) -> bool:
    """Storage hygiene, once the results are on disk and the row says so (it runs after the commit: a publish step
    repeated after a crash must still find its job). The row's ``cleanup_pending`` mark is cleared only when every
    deletion is done, so one that failed or that a crash cut off is tried again by :func:`sweep_clean_ups`. A failure
    costs DeepVA storage, not results: it is logged and never fails the file. Deleting twice is harmless."""
    storage, job = _deletions_owed(services, asset)
    try:
        if storage:
            services.client.delete_storage(asset.storage_id)
            log.info("storage_deleted", storage_id=asset.storage_id)
        if job:
            services.client.delete_job(asset.job_id)
            log.info("job_deleted")
    except DeepVAError as error:
        log.warning("cleanup_failed", error=str(error), asset_id=asset.asset_id)
        return False
    services.ledger.clean_up_done(asset.id)
    return True


#: A published row's clean-up is first tried right after its commit; the sweep leaves it that long before trying.
CLEAN_UP_RETRY_SECONDS = 60.0
SWEEP_BATCH = 100


def sweep_clean_ups(services: Services, updated_before: float, stop: threading.Event | None = None) -> int:
    """Try again the deletions of rows marked before ``updated_before``: the daemon passes its start time once (what a
    crash cut off), then every minute the time a minute ago (what DeepVA refused; a younger row's own clean-up may
    still be running). Returns how many rows are now clean. Stops while the API key is refused, and on ``stop``."""
    cleaned = 0
    while services.api_gate.is_open and not (stop is not None and stop.is_set()):
        rows = services.ledger.pending_clean_ups(updated_before, SWEEP_BATCH)
        done = sum(clean_up(services, asset) for asset in rows)
        cleaned += done
        if len(rows) < SWEEP_BATCH or done == 0:
            break
    if cleaned:
        log.info("clean_ups_retried", rows=cleaned)
    return cleaned


def _paths(written: WrittenSidecars) -> dict[str, str | None]:
    return {"xmp_path": str(written.xmp) if written.xmp else None, "json_path": str(written.json) if written.json else None}


