"""The flow, in order: discover → settle → sniff → submit → track → publish.

Discovery feeds the ledger from file-system events and scans (see ``discover``); every other stage is a step the
generic runner in :mod:`deepva_watch.pipeline` applies to ledger rows. This list is the one place that orders them.
"""

from __future__ import annotations

from deepva_watch import ledger as states
from deepva_watch.pipeline import Stage
from deepva_watch.stages.publish import home_state, publish
from deepva_watch.stages.settle import settle
from deepva_watch.stages.sniff import sniff_asset
from deepva_watch.stages.submit import create_job, upload
from deepva_watch.stages.track import track

STAGES: tuple[Stage, ...] = (
    Stage("settle", takes=(states.SETTLING,), step=settle, batch=256),
    Stage("sniff", takes=(states.SETTLED,), step=sniff_asset),
    Stage("upload", takes=(states.ACCEPTED,), step=upload, working=states.UPLOADING, workers=lambda config: config.max_uploads),
    Stage("submit", takes=(states.UPLOADED,), step=create_job, working=states.SUBMITTING),
    Stage("track", takes=(states.SUBMITTED,), step=track),
    Stage("publish", takes=(states.COMPLETED, states.JOB_FAILED), step=publish, working=states.PUBLISHING, home=home_state),
)
