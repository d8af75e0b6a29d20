"""SNIFF: decide what a settled file is from its content, never from its name, and fingerprint it.

A ``.jpg`` that is really an HTML error page ends here, with its reason in the ledger and the log, and is never
uploaded. The fingerprint taken here identifies this version of the file from now on.
"""

from __future__ import annotations

import os

from deepva_watch.flow import Advance, Changed, Outcome, Retry, Services, gone
from deepva_watch.ledger import Asset
from deepva_watch.media.fingerprint import fingerprint
from deepva_watch.media.sniff import Sniffed, sniff
from deepva_watch.states import State


def sniff_asset(services: Services, asset: Asset) -> Outcome:
    try:
        info = os.stat(asset.path, follow_symlinks=False)
        if (info.st_size, info.st_mtime_ns) != (asset.size, asset.mtime_ns):
            return Changed(info.st_size, info.st_mtime_ns, "the file changed after it settled")
        verdict = sniff(asset.path)
        if not isinstance(verdict, Sniffed):
            return Advance(State.REJECTED, {"last_error": verdict.reason})
        content_hash = fingerprint(asset.path)
    except FileNotFoundError:
        return gone()
    except PermissionError as error:
        return Retry(f"cannot read the file: {error.strerror}")
    return Advance(State.ACCEPTED, {"mime": verdict.mime, "kind": verdict.kind, "content_hash": content_hash})
