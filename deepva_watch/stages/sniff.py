"""SNIFF: decide what a settled file is from its content, never from its name, and fingerprint it.

A ``.jpg`` that is really an HTML error page must end here, with its reason in the ledger and the log, and never be
uploaded. The fingerprint taken here identifies this version of the file from now on.
"""

from __future__ import annotations

import os

from deepva_watch import ledger as states
from deepva_watch.ledger import Asset
from deepva_watch.media.fingerprint import fingerprint
from deepva_watch.media.sniff import Sniffed, sniff
from deepva_watch.pipeline import Advance, Outcome, Retry, Services, gone


def sniff_asset(services: Services, asset: Asset) -> Outcome:
    try:
        info = os.stat(asset.path, follow_symlinks=False)
        if (info.st_size, info.st_mtime_ns) != (asset.size, asset.mtime_ns):
            services.ledger.observe(asset.folder, asset.relpath, info.st_size, info.st_mtime_ns, services.clock.now())
            return Advance(states.SUPERSEDED, {"last_error": "the file changed after it settled"})
        verdict = sniff(asset.path)
        if not isinstance(verdict, Sniffed):
            return Advance(states.REJECTED, {"last_error": verdict.reason})
        content_hash = fingerprint(asset.path)
    except FileNotFoundError:
        return gone()
    except PermissionError as error:
        return Retry(f"cannot read the file: {error.strerror}")
    return Advance(states.ACCEPTED, {"mime": verdict.mime, "kind": verdict.kind, "content_hash": content_hash})
