"""TRACK: follow submitted jobs until DeepVA says each is completed, failed or stopped — with few requests.

"To avoid spamming the /jobs endpoint", as the API documentation puts it: the jobs due in a batch are answered by
pages of ``GET /jobs/`` (:func:`begin`), and only jobs not found there are asked for one by one. Each job's next look
is scheduled from its progress, on a grid of the poll interval so that jobs fall due together, and a budget caps the
requests per minute across all jobs. States DeepVA does not document are logged and polled on. A job DeepVA no longer
knows sends the file back to be submitted again rather than losing it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from deepva_watch.config import Config
from deepva_watch.deepva import DeepVAError, Job, NotFound
from deepva_watch.flow import Advance, Outcome, Services, Wait
from deepva_watch.flow.policy import outcome_for
from deepva_watch.ledger import Asset, dumps_errors
from deepva_watch.states import State, after_job, without_job

log = structlog.get_logger("deepva_watch.track")

LIST_PAGE_SIZE = 100
#: Rows the tracker takes at once: one list page answers for all of them.
BATCH = 200
#: With fewer jobs than this at DeepVA, asking for each is as cheap as listing.
LIST_THRESHOLD = 2
MAX_POLL_INTERVAL_SECONDS = 120.0
#: With a webhook receiver, polls are this much rarer: a delivery makes the job due at once.
WEBHOOK_POLL_FACTOR = 6
#: With retry_failed_jobs on, a file whose job fails is submitted again this many times before it is parked.
FAILED_JOB_RETRIES = 2


@dataclass
class Batch:
    """What a batch of due jobs shares: the jobs one or more list pages answered."""

    services: Services
    listed: dict[str, Job] = field(default_factory=dict)


def room(services: Services) -> int:
    """While the per-minute request budget is spent, the stage rests as a whole."""
    return BATCH if services.poll_budget.seconds_until_available() == 0 else 0


def rest(services: Services) -> float:
    return services.poll_budget.seconds_until_available()


def begin(services: Services, assets: Sequence[Asset]) -> Batch:
    """List pages instead of one request per job, for as long as the pages still hold due jobs."""
    batch = Batch(services)
    due = {asset.job_id for asset in assets if asset.job_id}
    ours = services.ledger.job_ids_in(State.SUBMITTED)
    if not due or len(ours) < LIST_THRESHOLD:
        return batch
    offset = 0
    for _ in range(len(ours) // LIST_PAGE_SIZE + 2):
        if services.poll_budget.take() > 0:
            break
        try:
            page = services.client.list_jobs(offset=offset, limit=LIST_PAGE_SIZE, only=due)
        except DeepVAError as error:  # the steps ask for each job themselves
            log.warning("job_list_failed", error=str(error))
            break
        batch.listed.update((job.id, job) for job in page.jobs if job.id in due)
        offset += page.listed
        if due <= batch.listed.keys() or not page.has_next or not page.listed:
            break
    return batch


def track(batch: Batch, asset: Asset) -> Outcome:
    services = batch.services
    now = services.clock.now()
    job = batch.listed.get(asset.job_id or "")
    if job is None:
        if (wait := services.poll_budget.take()) > 0:
            return Wait(now + wait)
        try:
            job = services.client.get_job(asset.job_id or "")
        except NotFound:
            log.warning("job_vanished", note="DeepVA no longer knows this job; submitting the file again")
            return Advance(State.UPLOADED, {**without_job(), "last_error": "DeepVA no longer knew the job"})
        except DeepVAError as error:
            return outcome_for(error)
    progress = {"job_state": job.state, "job_progress": job.progress}
    target = after_job(job.status)
    if target is None:
        if job.status is None:
            log.warning("job_state_unknown", state=job.state, note="polling on")
        return Wait(on_grid(services.config, now + next_interval(services.config, asset, job, now)), progress)
    services.telemetry.job_finished(now - (asset.submitted_at or now), job.state)
    if target == State.COMPLETED:
        return Advance(State.COMPLETED, {**progress, "completed_at": now, "job_snapshot": job.dumps()})
    errors = list(job.errors) or [f"DeepVA reported the job as {job.state}"]
    failures = asset.job_failures + 1
    if services.config.retry_failed_jobs and failures <= FAILED_JOB_RETRIES:
        log.warning("job_failed_retrying", errors=errors, failures=failures)
        return Advance(State.UPLOADED, {**without_job(), "job_failures": failures, "last_error": "; ".join(errors)})
    return Advance(State.JOB_FAILED, {**progress, "completed_at": now, "job_errors": dumps_errors(errors),
                                      "job_failures": failures, "job_snapshot": job.dumps()})


def base_interval(config: Config) -> float:
    """The first wait after submission, and the shortest between looks."""
    if config.webhook.listen:  # DeepVA calls us when it is done; polling is only the guarantee
        return config.poll_interval_seconds * WEBHOOK_POLL_FACTOR
    return config.poll_interval_seconds


def first_look(config: Config, submitted_at: float) -> float:
    return on_grid(config, submitted_at + base_interval(config))


def next_interval(config: Config, asset: Asset, job: Job, now: float) -> float:
    """Quick at first; then from the job's own pace: about half of its estimated remaining time, within bounds."""
    base = base_interval(config)
    age = max(0.0, now - (asset.submitted_at or now))
    if job.progress >= 0.02 and age > 0:
        remaining = age * (1 - job.progress) / job.progress
        return min(MAX_POLL_INTERVAL_SECONDS, max(base, remaining / 2))
    return min(MAX_POLL_INTERVAL_SECONDS / 2, base * (1 + age / 60))


def on_grid(config: Config, moment: float) -> float:
    """Round a poll time up to the next multiple of the base interval, so that jobs fall due together and one list
    request serves all of them."""
    step = base_interval(config)
    return math.ceil(moment / step) * step if step > 0 else moment
