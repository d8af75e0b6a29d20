"""SNIFF: decide what a settled file is from its content, never from its name, and fingerprint it.

A ``.jpg`` that is really an HTML error page ends here, with its reason in the ledger and the log, and is never
uploaded. The file is opened as the version that settled (:mod:`deepva_watch.media.files`), and its identity, the
fingerprint taken here and its type describe that one file from now on: later steps read only it.
"""

from __future__ import annotations

from deepva_watch.flow import Advance, Outcome, Retry, Services, gone
from deepva_watch.flow.policy import changed_outcome
from deepva_watch.ledger import Asset
from deepva_watch.media.files import VersionChanged, identity_of, open_version
from deepva_watch.media.fingerprint import fingerprint_descriptor
from deepva_watch.media.sniff import Sniffed, sniff_descriptor
from deepva_watch.states import State


def sniff_asset(services: Services, asset: Asset) -> Outcome:
    folder = services.folder(asset)
    try:
        with open_version(folder.path.absolute(), asset.relpath, follow_symlinks=folder.follow_symlinks,
                          size=asset.size, mtime_ns=asset.mtime_ns) as descriptor:
            verdict = sniff_descriptor(descriptor)
            if not isinstance(verdict, Sniffed):
                return Advance(State.REJECTED, {"last_error": verdict.reason})
            content_hash = fingerprint_descriptor(descriptor)
            identity = identity_of(descriptor)
    except VersionChanged as changed:
        return changed_outcome(changed, "the file changed after it settled")
    except FileNotFoundError:
        return gone()
    except PermissionError as error:
        return Retry(f"cannot read the file: {error.strerror}")
    return Advance(State.ACCEPTED, {"mime": verdict.mime, "kind": verdict.kind, "content_hash": content_hash,
                                    "device": identity.device, "inode": identity.inode})
