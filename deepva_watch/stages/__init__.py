"""The flow, in order: settle → sniff → upload → submit → track → publish (and report, for jobs DeepVA failed), then
act, where a folder hands finished files on (``on_done``, ``on_failed``).

Discovery (:mod:`deepva_watch.watch`) feeds the ledger; every stage here is a step the generic runner
(:mod:`deepva_watch.flow.runner`) applies to ledger rows. This list is the one place that orders them and says how
much work each may take.
"""

from __future__ import annotations

from deepva_watch.flow import Admission, AnyStage, Stage, services_only
from deepva_watch.stages import track
from deepva_watch.stages.publish import publish, report
from deepva_watch.stages.settle import settle
from deepva_watch.stages.sniff import sniff_asset
from deepva_watch.stages import act, submit
from deepva_watch.stages import upload as uploads
from deepva_watch.states import AT_DEEPVA, State

#: Writing sidecars waits on fsync far more than it computes: several workers overlap those waits.
PUBLISH_WORKERS = 3
#: An upload worker takes several small files at once, but a file of this size or more alone.
UPLOAD_CLAIM_BYTES = 1024 * 1024

STAGES: tuple[AnyStage, ...] = (
    Stage("settle", (State.SETTLING,), settle, services_only, batch=256),
    Stage("sniff", (State.SETTLED,), sniff_asset, services_only, batch=32),
    Stage("upload", (State.ACCEPTED,), uploads.upload, uploads.begin, working=State.UPLOADING,
          workers=lambda config: config.max_uploads, batch=8, claim_bytes=UPLOAD_CLAIM_BYTES,
          admission=Admission(room=uploads.upload_window, needs_api=True, freed_by=(State.SUBMITTED,))),
    Stage("submit", (State.UPLOADED,), submit.create_job, submit.begin, working=State.SUBMITTING, batch=8,
          admission=Admission(quota=submit.active_jobs, needs_api=True, freed_by=(State.COMPLETED, State.JOB_FAILED, State.OVERDUE))),
    Stage("track", AT_DEEPVA, track.track, track.begin, batch=track.BATCH, together=track.TOGETHER_SECONDS,
          admission=Admission(room=track.room, rest=track.rest, needs_api=True, one_node=True)),
    Stage("publish", (State.COMPLETED,), publish, services_only, working=State.PUBLISHING,
          workers=lambda config: PUBLISH_WORKERS, batch=4, admission=Admission(needs_api=True)),
    Stage("report", (State.JOB_FAILED,), report, services_only, working=State.REPORTING, batch=4,
          admission=Admission(needs_api=True)),
    Stage("act", (State.HANDING_ON,), act.act, services_only, working=State.ACTING,
          workers=lambda config: act.ACT_WORKERS, hands_on=False),
)
