"""SETTLE: a file is complete once its size and modification time have stayed the same for ``settle_seconds``.

Copy tools, SMB clients and cameras write in bursts; a file picked up too early is uploaded truncated. The quiet period
restarts whenever a sighting shows a change, whether it came from an event, a rescan, or this stage's own look.
"""

from __future__ import annotations

import os
import stat

from deepva_watch import ledger as states
from deepva_watch.ledger import Asset
from deepva_watch.pipeline import Advance, Outcome, Services, Wait, gone


def settle(services: Services, asset: Asset) -> Outcome:
    now = services.clock.now()
    quiet = services.folder(asset).settle_seconds
    try:
        info = os.stat(asset.path, follow_symlinks=False)
    except FileNotFoundError:
        return gone()
    if not stat.S_ISREG(info.st_mode):
        return Advance(states.REJECTED, {"last_error": "not a regular file"})
    if (info.st_size, info.st_mtime_ns) != (asset.size, asset.mtime_ns):
        services.ledger.observe(asset.folder, asset.relpath, info.st_size, info.st_mtime_ns, now)
        return Wait(now + quiet)
    if now - asset.stable_since < quiet:
        return Wait(asset.stable_since + quiet)
    return Advance(states.SETTLED)
