"""The flow, in order: discover → settle → sniff → submit → track → publish.

Discovery feeds the ledger from file-system events and scans (see ``discover``); every other stage is a step the
generic runner in :mod:`deepva_watch.pipeline` applies to ledger rows. This list is the one place that orders them.
"""

from __future__ import annotations

from deepva_watch import ledger as states
from deepva_watch.pipeline import Stage
from deepva_watch.stages.publish import home_state, publish, start_writes
from deepva_watch.stages.settle import settle
from deepva_watch.stages.sniff import sniff_asset
from deepva_watch.stages.submit import create_job, submit_quota, upload, upload_capacity
from deepva_watch.stages import track as tracking

PUBLISH_WORKERS = 3
#: An upload worker takes several small files at a time (one claim and one commit for all of them), but a file of
#: this size or more alone, so that the other workers can start on the rest.
UPLOAD_CLAIM_BYTES = 1024 * 1024

STAGES: tuple[Stage, ...] = (
    Stage("settle", takes=(states.SETTLING,), step=settle, batch=256),
    Stage("sniff", takes=(states.SETTLED,), step=sniff_asset),
    Stage("upload", takes=(states.ACCEPTED,), step=upload, working=states.UPLOADING,
          workers=lambda config: config.max_uploads, claims=8, claim_bytes=UPLOAD_CLAIM_BYTES, capacity=upload_capacity,
          wakes_on=(states.SUBMITTED,), uses_api=True),
    # one creator that claims several rows at once: more threads here cost more in hand-overs of the interpreter
    # lock than they gain by overlapping round trips (measured with benchmarks/backlog.py)
    Stage("submit", takes=(states.UPLOADED,), step=create_job, working=states.SUBMITTING, claims=8,
          quota=submit_quota, wakes_on=(states.COMPLETED, states.JOB_FAILED), uses_api=True),
    Stage("track", takes=(states.SUBMITTED,), step=tracking.track, prefetch=tracking.prefetch,
          capacity=tracking.capacity, rest=tracking.rest, batch=tracking.BATCH, uses_api=True),
    # several publishers: writing sidecars waits on fsync far more than it computes; each hands its whole claim to
    # the publishing process before it collects the first answer
    Stage("publish", takes=(states.COMPLETED, states.JOB_FAILED), step=publish, working=states.PUBLISHING,
          home=home_state, workers=lambda config: PUBLISH_WORKERS, claims=4, prefetch=start_writes, uses_api=True),
)
