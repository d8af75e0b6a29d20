"""TRACK: follow submitted jobs until DeepVA says each is completed, failed or stopped — with few requests.

"To avoid spamming the /jobs endpoint", as the API documentation puts it: when several jobs are due at once, one page
of ``GET /jobs/`` answers for all of them (``prefetch``), and only jobs not found there are asked for one by one. Each
job's next look is scheduled from its progress (a long video at 10 % is not asked about every few seconds), and a
budget caps the requests per minute across all jobs.

States we do not know are logged and polled on, as new states may appear. A job the server no longer knows (deleted,
expired) sends the file back to be submitted again rather than losing it.
"""

from __future__ import annotations

import math

import structlog

from deepva_watch import ledger as states
from deepva_watch.config import Config
from deepva_watch.deepva import DeepVAError, Job, NotFound
from deepva_watch.ledger import Asset, dumps_errors
from deepva_watch.pipeline import Advance, Outcome, Services, Wait
from deepva_watch.stages.failures import outcome_for

log = structlog.get_logger("deepva_watch.track")

LIST_PAGE_SIZE = 100
#: With a webhook receiver, polls are this much rarer: a delivery makes the job due at once.
WEBHOOK_POLL_FACTOR = 6
BATCH = 200
#: With fewer jobs than this at DeepVA, asking for each is as cheap as listing.
LIST_THRESHOLD = 2
MAX_POLL_INTERVAL_SECONDS = 120.0
#: With retry_failed_jobs on, a file whose job fails is submitted again this many times before it is parked.
FAILED_JOB_RETRIES = 2


def capacity(services: Services) -> int:
    """While the per-minute request budget is spent, the stage rests as a whole instead of re-scheduling each job."""
    budget = services.poll_budget
    return BATCH if budget is None or budget.available() else 0


def prefetch(services: Services, assets: list[Asset]) -> None:
    """List pages instead of one request per job. A page costs one request whichever jobs it holds, so every job of
    ours it shows is used: due ones are answered from it, and any other that has ended is made due at once."""
    due = {asset.job_id for asset in assets if asset.job_id} - services.polled.ids()
    ours = services.ledger.job_ids_in(states.SUBMITTED)
    if not due or len(ours) < LIST_THRESHOLD:
        return
    wanted = set(ours)
    offset = 0
    for _ in range(len(ours) // LIST_PAGE_SIZE + 2):
        if services.poll_budget is not None and services.poll_budget.take() > 0:
            return
        page = services.client.list_jobs(offset=offset, limit=LIST_PAGE_SIZE, only=wanted)
        now = services.clock.now()
        for job in page.jobs:
            if job.id not in wanted:  # listed twice (the list moved on between pages)
                continue
            wanted.discard(job.id)
            if job.id in due:
                services.polled.put(job.id, job)
            elif job.is_terminal:  # answered already: it is stepped in the next round without another request
                services.polled.put(job.id, job)
                services.ledger.poll_now(job.id, now)
        offset += page.listed
        if not (wanted & due) or not page.has_next or not page.listed:
            return


def base_interval(config: Config) -> float:
    """The first wait after submission, and the shortest between looks."""
    if config.webhook.listen:  # DeepVA calls us when it is done; polling is only the guarantee
        return config.poll_interval_seconds * WEBHOOK_POLL_FACTOR
    return config.poll_interval_seconds


def next_interval(services: Services, asset: Asset, job: Job, now: float) -> float:
    """Quick at first; then from the job's own pace: about half of its estimated remaining time, within bounds."""
    base = base_interval(services.config)
    age = max(0.0, now - (asset.submitted_at or now))
    if job.progress >= 0.02 and age > 0:
        remaining = age * (1 - job.progress) / job.progress
        return min(MAX_POLL_INTERVAL_SECONDS, max(base, remaining / 2))
    return min(MAX_POLL_INTERVAL_SECONDS / 2, base * (1 + age / 60))


def track(services: Services, asset: Asset) -> Outcome:
    now = services.clock.now()
    job = services.polled.pop(asset.job_id or "")
    if job is None:
        if services.poll_budget is not None and (wait := services.poll_budget.take()) > 0:
            return Wait(now + wait)
        try:
            job = services.client.get_job(asset.job_id)
        except NotFound:
            log.warning("job_vanished", note="DeepVA no longer knows this job; submitting the file again")
            return Advance(states.UPLOADED, {"job_id": None, "job_state": None, "submit_attempted": 0})
        except DeepVAError as error:
            return outcome_for(error)
    progress = {"job_state": job.state, "job_progress": job.progress}
    if job.is_terminal and services.metrics is not None:
        services.metrics.job_finished(now - (asset.submitted_at or now), job.state)
    if job.state == "completed":
        services.jobs.put(asset.asset_id, job)
        return Advance(states.COMPLETED, {**progress, "completed_at": now})
    if job.is_terminal:
        errors = list(job.errors) or [f"DeepVA reported the job as {job.state}"]
        failures = asset.job_failures + 1
        if services.config.retry_failed_jobs and failures <= FAILED_JOB_RETRIES:
            log.warning("job_failed_retrying", errors=errors, failures=failures)
            return Advance(states.UPLOADED, {"job_id": None, "job_state": None, "submit_attempted": 0,
                                             "job_failures": failures, "last_error": "; ".join(errors)})
        services.jobs.put(asset.asset_id, job)
        return Advance(states.JOB_FAILED, {**progress, "completed_at": now, "job_errors": dumps_errors(errors),
                                           "job_failures": failures})
    if not job.is_known_state:
        log.warning("job_state_unknown", state=job.state, note="polling on")
    return Wait(on_grid(services.config, now + next_interval(services, asset, job, now)), progress)


def on_grid(config: Config, moment: float) -> float:
    """Round a poll time up to the next multiple of the base interval, so that jobs fall due together and one list
    request serves all of them instead of one request each."""
    step = base_interval(config)
    return math.ceil(moment / step) * step if step > 0 else moment


def rest(services: Services) -> float:
    """While the request budget is spent: how long until the next request may be made."""
    return services.poll_budget.seconds_until_available() if services.poll_budget is not None else 0.0
