"""The state machine of a file version, in one place: its states, the exits each allows, where a working state
returns after a crash, what DeepVA's job states mean for it, and where a failed file goes back on ``retry``.

A healthy image or video passes through::

    settling → settled → accepted → uploading → uploaded → submitting → submitted → completed → publishing → published

A job DeepVA failed or stopped goes ``submitted → job_failed → reporting → failed`` (its JSON sidecar says why). A job
running past ``overdue_job_release_seconds`` goes ``submitted → overdue``: still tracked, no longer holding one of the
``max_active_jobs`` slots. A file present when its folder was first watched may end ``skipped`` at once (the folder's
``existing`` rule), and one whose own sidecars already hold a completed job for the same content and modules goes
``settled → published`` without a new job (adopted). Where the folder has ``on_done`` or ``on_failed`` actions, a
file about to end ``published`` or ``failed`` goes ``handing_on`` first, and each action is a step (``acting``) until
the last one lands it where it was going. Side
exits: ``rejected`` (not a supported media file), ``failed`` (with the reason, the stage it failed in and whether a
retry can help), ``gone`` (the file vanished before DeepVA had it) and ``superseded`` (a newer version arrived).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from deepva_watch.deepva.models import JobState


class State(StrEnum):
    SETTLING = "settling"
    SETTLED = "settled"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    OVERDUE = "overdue"
    COMPLETED = "completed"
    JOB_FAILED = "job_failed"
    PUBLISHING = "publishing"
    REPORTING = "reporting"
    PUBLISHED = "published"
    FAILED = "failed"
    GONE = "gone"
    SUPERSEDED = "superseded"
    SKIPPED = "skipped"
    HANDING_ON = "handing_on"
    ACTING = "acting"


S = State

#: A worker holds a row in a working state while it talks to DeepVA or writes sidecars; after a crash the row goes
#: back to its home and the step is done again.
HOME: Mapping[State, State] = {
    S.UPLOADING: S.ACCEPTED, S.SUBMITTING: S.UPLOADED, S.PUBLISHING: S.COMPLETED, S.REPORTING: S.JOB_FAILED,
    S.ACTING: S.HANDING_ON,
}
FINAL = frozenset({S.REJECTED, S.PUBLISHED, S.FAILED, S.GONE, S.SUPERSEDED, S.SKIPPED})
#: Not handed to DeepVA yet: a version that vanishes here simply ends ``gone``, and a newer one supersedes it.
UNSUBMITTED = (S.SETTLING, S.SETTLED, S.ACCEPTED, S.UPLOADED)
ALL = tuple(State)

_ALWAYS = frozenset({S.FAILED, S.GONE, S.SUPERSEDED, S.HANDING_ON})
#: Where a step may take a row from each state (a Wait or Retry keeps it at home, which is always allowed).
EXITS: Mapping[State, frozenset[State]] = {
    S.SETTLING: _ALWAYS | {S.SETTLED, S.REJECTED},
    S.SETTLED: _ALWAYS | {S.ACCEPTED, S.REJECTED, S.PUBLISHED},
    S.ACCEPTED: _ALWAYS | {S.UPLOADING},
    S.UPLOADING: _ALWAYS | {S.UPLOADED},
    S.UPLOADED: _ALWAYS | {S.SUBMITTING},
    S.SUBMITTING: _ALWAYS | {S.SUBMITTED},
    S.SUBMITTED: _ALWAYS | {S.COMPLETED, S.JOB_FAILED, S.UPLOADED, S.OVERDUE},
    S.HANDING_ON: _ALWAYS,
    S.ACTING: _ALWAYS | {S.PUBLISHED},
    S.OVERDUE: _ALWAYS | {S.COMPLETED, S.JOB_FAILED, S.UPLOADED},
    S.COMPLETED: _ALWAYS | {S.PUBLISHING},
    S.PUBLISHING: _ALWAYS | {S.PUBLISHED},
    S.JOB_FAILED: _ALWAYS | {S.REPORTING},
    S.REPORTING: _ALWAYS,
    **{final: frozenset() for final in FINAL},
}


def allowed(origin: State, target: State) -> bool:
    return target == origin or target == HOME.get(origin) or target in EXITS[origin]


def after_job(status: JobState | None) -> State | None:
    """Where a submitted file goes when DeepVA reports its job in ``status``; None: still running (or unknown)."""
    if status is JobState.COMPLETED:
        return S.COMPLETED
    if status in (JobState.FAILED, JobState.STOPPED):
        return S.JOB_FAILED
    return None


#: Jobs DeepVA runs for us, tracked until they finish.
AT_DEEPVA = (S.SUBMITTED, S.OVERDUE)

#: The state each stage takes its rows from: a file that failed in a stage goes back there on ``retry``.
STAGE_ENTRY: Mapping[str, State] = {
    "settle": S.SETTLING, "sniff": S.SETTLED, "upload": S.ACCEPTED, "submit": S.UPLOADED, "track": S.SUBMITTED,
    "publish": S.COMPLETED, "report": S.JOB_FAILED, "act": S.HANDING_ON,
}
#: Stages whose failure only a new DeepVA job can mend (the job itself failed).
NEEDS_NEW_JOB = frozenset({"report"})


def without_job() -> dict[str, Any]:
    """The changes that forget a row's DeepVA job, so a new one starts from a clean slate."""
    return {"job_id": None, "job_state": None, "job_progress": None, "job_errors": None, "job_snapshot": None,
            "submit_attempted": 0, "submitted_at": None, "completed_at": None, "published_at": None}


def without_storage() -> dict[str, Any]:
    return {"storage_url": None, "storage_id": None}
