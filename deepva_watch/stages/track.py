"""TRACK: follow submitted jobs until DeepVA says each is completed, failed or stopped — soon, and with few requests.

While files wait for a slot under ``max_active_jobs``, every second a finished job goes unnoticed is a second of the
quota unused. So each job's next look is when it is likely done: from its progress and the time it has run, or, before
it shows progress, from what DeepVA took for the last jobs of its kind; never sooner than the request budget allows.
When any job is due, all submitted jobs are looked at together: "to avoid spamming the /jobs endpoint", as the API
documentation puts it, pages of ``GET /jobs/`` answer for all of them (:func:`begin`), and only jobs not found there
are asked for one by one. States DeepVA does not document are logged and polled on. A job DeepVA no longer knows
sends the file back to be submitted again rather than losing it. A job that runs for too long is reported, then gives
its ``max_active_jobs`` slot to the next file (``overdue``) and is tracked on.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from deepva_watch.config import Config
from deepva_watch.deepva import DeepVAError, Job, NotFound
from deepva_watch.flow import Advance, Outcome, Services, Wait
from deepva_watch.flow.policy import outcome_for
from deepva_watch.ledger import Asset, Ledger, dumps_errors
from deepva_watch.states import State, after_job, without_job

log = structlog.get_logger("deepva_watch.track")

LIST_PAGE_SIZE = 100
#: Rows the tracker takes at once: one list page answers for a hundred.
BATCH = 200
#: With fewer jobs than this at DeepVA, asking for each is as cheap as listing.
LIST_THRESHOLD = 2
MAX_POLL_INTERVAL_SECONDS = 120.0
#: With a webhook receiver, polls are this much rarer: a delivery makes the job due at once.
WEBHOOK_POLL_FACTOR = 6
#: With retry_failed_jobs on, a file whose job fails is submitted again this many times before it is parked.
FAILED_JOB_RETRIES = 2
#: What the expectation for a kind of file is taken from: DeepVA's own time for the last jobs of that kind.
RECENT_JOBS = 20
#: Jobs expected to finish this close together are looked at together, with one request.
TOGETHER_SECONDS = 0.15
#: The first look at a new job before anything is known about how long jobs take.
FIRST_LOOK_SECONDS = 1.0
#: A look comes this long after the time a job is expected to be done, so that it finds it done.
MARGIN_SECONDS = 0.02


@dataclass
class Batch:
    """What a batch of due jobs shares: the jobs the list pages answered, and what jobs of each kind take."""

    services: Services
    listed: dict[str, Job] = field(default_factory=dict)
    expected: dict[str, float | None] = field(default_factory=dict)


def room(services: Services) -> int:
    """While the per-minute request budget is spent, the stage rests as a whole."""
    return BATCH if services.poll_budget.seconds_until_available() == 0 else 0


def rest(services: Services) -> float:
    return services.poll_budget.seconds_until_available()


def expected_seconds(ledger: Ledger, kind: str | None) -> float | None:
    """The median time DeepVA took for the last jobs of this kind of file; None before there were any."""
    recent = ledger.recent_job_seconds(kind or "video", RECENT_JOBS)
    return statistics.median(recent) if recent else None


def expected_by_kind(ledger: Ledger, assets: Sequence[Asset]) -> dict[str, float | None]:
    """:func:`expected_seconds` for each kind of file in a batch (``kind or "video"``), one query per kind."""
    return {kind: expected_seconds(ledger, kind) for kind in {asset.kind or "video" for asset in assets}}


def begin(services: Services, assets: Sequence[Asset]) -> Batch:
    """List pages instead of one request per job, for as long as the pages still hold jobs of the batch.

    The walk leaves the budget's last request to the steps: a job the pages do not reach (a few old ones behind many
    newer jobs) is then asked for by itself, rather than waiting for a request the next walk spends first again."""
    batch = Batch(services, expected=expected_by_kind(services.ledger, assets))
    wanted = {asset.job_id for asset in assets if asset.job_id}
    if len(wanted) < LIST_THRESHOLD:
        return batch
    offset = 0
    for _ in range(len(wanted) // LIST_PAGE_SIZE + 2):
        if services.poll_budget.available() < 2 or services.poll_budget.take() > 0:
            break
        try:
            page = services.client.list_jobs(offset=offset, limit=LIST_PAGE_SIZE, only=wanted)
        except DeepVAError as error:  # the steps ask for each job themselves
            log.warning("job_list_failed", error=str(error))
            break
        batch.listed.update((job.id, job) for job in page.jobs if job.id in wanted)
        offset += page.listed
        if wanted <= batch.listed.keys() or not page.has_next or not page.listed:
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
        expected = batch.expected.get(asset.kind or "video")
        look = next_look(services.config, asset, job, now, expected)
        return overdue(services.config, asset, now, progress) or Wait(look, progress)
    services.telemetry.job_finished(now - (asset.submitted_at or now), job.state)
    finished = {**progress, "completed_at": now, "job_snapshot": job.dumps(), "job_seconds": job_seconds(job, asset, now)}
    if target == State.COMPLETED:
        return Advance(State.COMPLETED, finished)
    errors = list(job.errors) or [f"DeepVA reported the job as {job.state}"]
    failures = asset.job_failures + 1
    if services.config.retry_failed_jobs and failures <= FAILED_JOB_RETRIES:
        log.warning("job_failed_retrying", errors=errors, failures=failures)
        return Advance(State.UPLOADED, {**without_job(), "job_failures": failures, "last_error": "; ".join(errors)})
    return Advance(State.JOB_FAILED, {**finished, "job_errors": dumps_errors(errors), "job_failures": failures})


def overdue(config: Config, asset: Asset, now: float, progress: dict[str, object]) -> Outcome | None:
    """Past ``overdue_job_seconds`` the job is reported once; past ``overdue_job_release_seconds`` its slot is
    released (the row goes ``overdue``, tracked on). None while neither limit is newly passed."""
    submitted = asset.submitted_at or now
    if asset.state == State.SUBMITTED and now - submitted >= config.overdue_job_release_seconds:
        log.warning("job_overdue_slot_released", hours=round((now - submitted) / 3600, 1),
                    note="the next file may start; this job is still tracked")
        return Advance(State.OVERDUE, progress)
    if asset.updated_at < submitted + config.overdue_job_seconds <= now:
        log.warning("job_overdue", hours=round((now - submitted) / 3600, 1), job_id=asset.job_id,
                    note="DeepVA has not finished it; health is amber until it does")
    return None


def job_seconds(job: Job, asset: Asset, now: float) -> float:
    """DeepVA's own time for the job: its duration, else its timestamps, else what we saw."""
    if job.duration:
        return job.duration
    if job.time_created is not None and job.time_completed is not None:
        return max(0.0, (job.time_completed - job.time_created).total_seconds())
    return max(0.0, now - (asset.submitted_at or now))


def shortest_gap(config: Config) -> float:
    """Looks at one job come no closer together than this (the request budget bounds all looks together)."""
    gap = 0.1
    return max(gap, config.poll_interval_seconds) * WEBHOOK_POLL_FACTOR if config.webhook.listen else gap


def first_look(config: Config, submitted_at: float, expected: float | None) -> float:
    """The first look at a new job: when jobs of its kind took lately, else soon (its progress tells the rest)."""
    wait = expected + MARGIN_SECONDS if expected is not None else min(FIRST_LOOK_SECONDS, config.poll_interval_seconds)
    if config.webhook.listen:  # DeepVA calls us when it is done; polling is only the guarantee
        wait = max(wait, config.poll_interval_seconds) * WEBHOOK_POLL_FACTOR
    return submitted_at + max(shortest_gap(config), wait)


def next_look(config: Config, asset: Asset, job: Job, now: float, expected: float | None) -> float:
    """When the running job is likely done: about its remaining time by its progress, else by what jobs of its kind
    took; a job that runs longer than expected is looked at less often as it drags on, within bounds."""
    age = max(0.0, now - (asset.submitted_at or now))
    ran = job.duration if job.duration else age
    if job.progress >= 0.02 and ran > 0:
        remaining = ran * (1 - job.progress) / job.progress + MARGIN_SECONDS
    elif expected is not None and expected + MARGIN_SECONDS > age:
        remaining = expected + MARGIN_SECONDS - age
    else:
        remaining = config.poll_interval_seconds * (1 + age / 60)
    if config.webhook.listen:
        remaining = max(remaining, config.poll_interval_seconds) * WEBHOOK_POLL_FACTOR
    return now + min(MAX_POLL_INTERVAL_SECONDS, max(shortest_gap(config), remaining))
