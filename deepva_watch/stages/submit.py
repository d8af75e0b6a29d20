"""SUBMIT: hand the file to DeepVA (upload it to storage) and create the mining job with the folder's modules.

Two steps, each its own committed transition: ``accepted → uploading → uploaded`` keeps the storage URL, so a crash
after the upload does not upload again; ``uploaded → submitting → submitted`` keeps the job id. Creating a job is not
idempotent and may succeed even when the answer is lost, so a row that may already have a job (``submit_attempted``)
first looks for a job carrying its tag (the asset id) before it creates one.
"""

from __future__ import annotations

import os

import structlog

from deepva_watch import ledger as states
from deepva_watch.deepva import DeepVAError, SourceChanged
from deepva_watch.deepva.errors import may_have_been_applied
from deepva_watch.ledger import Asset, Quota
from deepva_watch.pipeline import Advance, Fail, Outcome, Retry, Services, beat
from deepva_watch.sources import SourceMappingError, job_source
from deepva_watch.stages.track import base_interval, on_grid
from deepva_watch.webhook import webhook_request
from deepva_watch.stages.failures import outcome_for

log = structlog.get_logger("deepva_watch.submit")


def _unchanged(services: Services, asset: Asset) -> bool:
    """Re-check the file just before it leaves: a changed file is a new version, recorded as such."""
    info = os.stat(asset.path, follow_symlinks=False)
    if (info.st_size, info.st_mtime_ns) == (asset.size, asset.mtime_ns):
        return True
    services.ledger.observe(asset.folder, asset.relpath, info.st_size, info.st_mtime_ns, services.clock.now())
    return False


def storage_name(asset: Asset) -> str:
    """The name an upload gets in DeepVA storage: unique per asset version, so leftovers of a cut-off upload can be
    found and removed before the next attempt without touching anyone else's objects."""
    return f"{asset.asset_id}_{asset.path.name}"


def upload(services: Services, asset: Asset) -> Outcome:
    """Upload to DeepVA storage; for folders whose files DeepVA reads itself (on-prem path, URL) only the re-check."""
    folder = services.folder(asset)
    name = storage_name(asset)
    try:
        if not _unchanged(services, asset):
            return Advance(states.SUPERSEDED, {"last_error": "the file changed before upload"})
        if folder.source != "upload":
            return Advance(states.UPLOADED, {"storage_url": None, "storage_id": None})
        if asset.upload_attempted:
            _remove_leftovers(services, folder.storage_folder, name)
        stored = services.client.upload(asset.path, folder=folder.storage_folder, filename=name,
                                        throttle=services.upload_throttle, on_progress=lambda sent: beat())
    except SourceChanged:
        _unchanged(services, asset)
        return Advance(states.SUPERSEDED, {"last_error": "the file changed during upload; the new version follows"})
    except (DeepVAError, OSError) as error:
        outcome = outcome_for(error)
        if isinstance(outcome, Retry):
            return Retry(outcome.error, outcome.delay, outcome.counts, {"upload_attempted": 1})
        return outcome
    if services.metrics is not None:
        services.metrics.uploaded_bytes(asset.size)
    return Advance(states.UPLOADED, {"storage_url": stored.url, "storage_id": stored.id, "upload_attempted": 0})


def _remove_leftovers(services: Services, storage_folder: str, name: str) -> None:
    for stored in services.client.list_storage(storage_folder):
        if stored.name == name:
            log.info("storage_leftover_deleted", storage_id=stored.id, name=name)
            services.client.delete_storage(stored.id)


def upload_capacity(services: Services) -> int:
    """Uploads may run ahead of job creation only by a window: files uploaded but not yet submitted use DeepVA
    storage and wait; with a long backlog they would otherwise pile up there."""
    window = max(services.config.max_uploads, services.config.max_active_jobs)
    return window - services.ledger.count_in((states.UPLOADING, states.UPLOADED))


def submit_quota(services: Services) -> Quota:
    """``max_active_jobs``: jobs being created or submitted and not yet finished."""
    return Quota((states.SUBMITTING, states.SUBMITTED), services.config.max_active_jobs)


def create_job(services: Services, asset: Asset) -> Outcome:
    folder = services.folder(asset)
    try:
        if asset.submit_attempted:
            existing = services.client.find_jobs_by_tag(asset.asset_id)
            if existing:
                job = min(existing, key=lambda found: (found.time_created is None, found.time_created, found.id))
                log.info("job_found_by_tag", job_id=job.id, jobs_with_tag=len(existing))
                return _submitted(services, job)
        source = asset.storage_url if folder.source == "upload" else job_source(folder, asset.path)
        job = services.client.create_job(
            [source], dict(folder.modules), tag=asset.asset_id,
            webhook=webhook_request(services.config.webhook, folder.modules),
        )
    except SourceMappingError as error:
        return Fail(str(error))
    except DeepVAError as error:
        outcome = outcome_for(error)
        if may_have_been_applied(error) and isinstance(outcome, Retry):
            return Retry(outcome.error, outcome.delay, outcome.counts, {"submit_attempted": 1})
        return outcome
    return _submitted(services, job)


def _submitted(services: Services, job) -> Advance:  # type: ignore[no-untyped-def]
    now = services.clock.now()
    return Advance(
        states.SUBMITTED,
        {"job_id": job.id, "job_state": job.state, "job_progress": job.progress, "submitted_at": now,
         "submit_attempted": 1, "next_attempt_at": on_grid(services.config, now + base_interval(services.config))},
    )
