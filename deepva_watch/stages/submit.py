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
from deepva_watch.deepva import DeepVAError, SourceChanged, TransportError
from deepva_watch.ledger import Asset
from deepva_watch.pipeline import Advance, Outcome, Retry, Services
from deepva_watch.stages.failures import outcome_for

log = structlog.get_logger("deepva_watch.submit")


def _unchanged(services: Services, asset: Asset) -> bool:
    """Re-check the file just before it leaves: a changed file is a new version, recorded as such."""
    info = os.stat(asset.path, follow_symlinks=False)
    if (info.st_size, info.st_mtime_ns) == (asset.size, asset.mtime_ns):
        return True
    services.ledger.observe(asset.folder, asset.relpath, info.st_size, info.st_mtime_ns, services.clock.now())
    return False


def upload(services: Services, asset: Asset) -> Outcome:
    folder = services.folder(asset)
    try:
        if not _unchanged(services, asset):
            return Advance(states.SUPERSEDED, {"last_error": "the file changed before upload"})
        stored = services.client.upload(asset.path, folder=folder.storage_folder, filename=asset.path.name)
    except SourceChanged:
        _unchanged(services, asset)
        return Advance(states.SUPERSEDED, {"last_error": "the file changed during upload; the new version follows"})
    except (DeepVAError, OSError) as error:
        return outcome_for(error)
    return Advance(states.UPLOADED, {"storage_url": stored.url, "storage_id": stored.id})


def create_job(services: Services, asset: Asset) -> Outcome:
    folder = services.folder(asset)
    try:
        if asset.submit_attempted:
            existing = services.client.find_jobs_by_tag(asset.asset_id)
            if existing:
                job = min(existing, key=lambda found: (found.time_created is None, found.time_created, found.id))
                log.info("job_found_by_tag", job_id=job.id, jobs_with_tag=len(existing))
                return _submitted(services, job)
        job = services.client.create_job([asset.storage_url], dict(folder.modules), tag=asset.asset_id)
    except TransportError as error:
        outcome = outcome_for(error)
        if error.maybe_applied and isinstance(outcome, Retry):
            return Retry(outcome.error, outcome.delay, outcome.counts, {"submit_attempted": 1})
        return outcome
    except DeepVAError as error:
        return outcome_for(error)
    return _submitted(services, job)


def _submitted(services: Services, job) -> Advance:  # type: ignore[no-untyped-def]
    now = services.clock.now()
    return Advance(
        states.SUBMITTED,
        {"job_id": job.id, "job_state": job.state, "job_progress": job.progress, "submitted_at": now,
         "submit_attempted": 1, "next_attempt_at": now + services.config.poll_interval_seconds},
    )
