"""SUBMIT: create the mining job with the folder's modules, tagged with the asset id, within the daily budget.

Creating a job is not idempotent and may succeed even when the answer is lost, so a row that may already have a job
(``submit_attempted``) first looks for a job carrying its tag before it creates one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from deepva_watch.config import Config
from deepva_watch.deepva import DeepVAError, Job
from deepva_watch.deepva.errors import may_have_been_applied
from deepva_watch.deepva.webhook import webhook_request
from deepva_watch.flow import Advance, Fail, Outcome, Retry, Services
from deepva_watch.flow.budget import Allowance
from deepva_watch.flow.policy import outcome_for
from deepva_watch.ledger import Asset, Quota
from deepva_watch.sources import SourceMappingError, job_source
from deepva_watch.stages.track import expected_by_kind, first_look
from deepva_watch.states import State

log = structlog.get_logger("deepva_watch.submit")


def active_jobs(config: Config) -> Quota:
    """``max_active_jobs``: jobs being created or submitted and not yet finished."""
    return Quota((State.SUBMITTING, State.SUBMITTED), config.max_active_jobs)


@dataclass
class Submissions:
    """What a batch of job creations shares: the daily budget left for it, and how long jobs of each kind took."""

    services: Services
    allowance: Allowance
    expected: dict[str, float | None]


def begin(services: Services, assets: Sequence[Asset]) -> Submissions:
    return Submissions(services, Allowance(services), expected_by_kind(services.ledger, assets))


def create_job(batch: Submissions, asset: Asset) -> Outcome:
    services = batch.services
    folder = services.folder(asset)
    try:
        if asset.submit_attempted:
            existing = services.client.find_jobs_by_tag(asset.asset_id)
            if existing:
                job = min(existing, key=lambda found: (found.time_created is None, found.time_created, found.id))
                log.info("job_found_by_tag", job_id=job.id, jobs_with_tag=len(existing))
                return submitted(services, job, batch.expected.get(asset.kind or "video"))
        if (over_budget := batch.allowance.take(asset)) is not None:
            return over_budget
        source = job_source(folder, services.path_of(asset), asset.storage_url)
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
    return submitted(services, job, batch.expected.get(asset.kind or "video"))


def submitted(services: Services, job: Job, expected: float | None) -> Advance:
    now = services.clock.now()
    return Advance(State.SUBMITTED, {
        "job_id": job.id, "job_state": job.state, "job_progress": job.progress, "submitted_at": now,
        "submit_attempted": 1, "next_attempt_at": first_look(services.config, now, expected),
    })
