"""SETTLE: a file is complete once its size and modification time have stayed the same for ``settle_seconds`` and,
where the platform shows it, no process on this machine still has it open for writing.

Copy tools, SMB clients and cameras write in bursts; a file picked up too early is uploaded truncated. The quiet period
restarts whenever a sighting shows a change. Local writers that pause longer than the quiet period are still waited
for (:mod:`deepva_watch.media.openfiles`); writers on other machines cannot be seen that way, so for them the quiet
period is the rule. A file held open for writing without changing for ``WRITER_PATIENCE_SECONDS`` is taken anyway,
with a warning: some tools keep files open forever.
"""

from __future__ import annotations

import os
import stat

import structlog

from deepva_watch.flow import Advance, Changed, Outcome, Services, Wait, gone
from deepva_watch.ledger import Asset
from deepva_watch.media.openfiles import open_for_writing
from deepva_watch.states import State

log = structlog.get_logger("deepva_watch.settle")

WRITER_PATIENCE_SECONDS = 600.0
#: How often a file that is quiet but still open for writing is looked at again.
WRITER_RECHECK_SECONDS = 0.5


def settle(services: Services, asset: Asset) -> Outcome:
    now = services.clock.now()
    folder = services.folder(asset)
    quiet = folder.settle_seconds
    path = services.path_of(asset)
    try:
        info = os.stat(path, follow_symlinks=folder.follow_symlinks)
    except FileNotFoundError:
        return gone()
    if not stat.S_ISREG(info.st_mode):
        return Advance(State.REJECTED, {"last_error": "not a regular file"})
    if (info.st_size, info.st_mtime_ns) != (asset.size, asset.mtime_ns):
        return Changed(info.st_size, info.st_mtime_ns, "the file is still being written")
    if now - asset.stable_since < quiet:
        return Wait(asset.stable_since + quiet)
    if open_for_writing(path):
        waited = now - asset.stable_since
        if waited < max(WRITER_PATIENCE_SECONDS, quiet):
            return Wait(now + max(WRITER_RECHECK_SECONDS, min(quiet, 5.0)))
        log.warning("writer_never_closed", waited_seconds=round(waited),
                    note="the file is still open for writing but has not changed; taking it as complete")
    return Advance(State.SETTLED)
