"""TRACK: follow a submitted job until DeepVA says it is completed, failed or stopped.

States we do not know are logged and polled on, as the API documentation is thin and new states may appear. A job the
server no longer knows (deleted, expired) sends the file back to be submitted again rather than losing it.
"""

from __future__ import annotations

import structlog

from deepva_watch import ledger as states
from deepva_watch.deepva import DeepVAError, NotFound
from deepva_watch.ledger import Asset, dumps_errors
from deepva_watch.pipeline import Advance, Outcome, Services, Wait
from deepva_watch.stages.failures import outcome_for

log = structlog.get_logger("deepva_watch.track")


def track(services: Services, asset: Asset) -> Outcome:
    now = services.clock.now()
    try:
        job = services.client.get_job(asset.job_id)
    except NotFound:
        log.warning("job_vanished", note="DeepVA no longer knows this job; submitting the file again")
        return Advance(states.UPLOADED, {"job_id": None, "job_state": None, "submit_attempted": 0})
    except DeepVAError as error:
        return outcome_for(error)
    progress = {"job_state": job.state, "job_progress": job.progress}
    if job.state == "completed":
        services.jobs.put(asset.asset_id, job)
        return Advance(states.COMPLETED, {**progress, "completed_at": now})
    if job.is_terminal:
        services.jobs.put(asset.asset_id, job)
        errors = list(job.errors) or [f"DeepVA reported the job as {job.state}"]
        return Advance(states.JOB_FAILED, {**progress, "completed_at": now, "job_errors": dumps_errors(errors)})
    if not job.is_known_state:
        log.warning("job_state_unknown", state=job.state, note="polling on")
    return Wait(now + services.config.poll_interval_seconds, progress)
