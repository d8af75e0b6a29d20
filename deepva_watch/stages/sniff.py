"""SNIFF: decide what a settled file is from its content, never from its name, and fingerprint it.

A ``.jpg`` that is really an HTML error page ends here, with its reason in the ledger and the log, and is never
uploaded. The file is opened as the version that settled (:mod:`deepva_watch.media.files`), and its identity, the
fingerprint taken here and its type describe that one file from now on: later steps read only it. A video's duration
is taken here too (the daily budget counts it before the job is created).

A file whose own sidecars already hold a completed job for the same content and modules (written by this daemon
before its ledger was lost, or by another node) is adopted: published with that job, no new one.
"""

from __future__ import annotations

from typing import Any

import structlog

from deepva_watch.flow import Advance, Outcome, Retry, Services, gone
from deepva_watch.flow.policy import changed_outcome
from deepva_watch.ledger import Asset
from deepva_watch.media.files import VersionChanged, descriptor_path, identity_of, open_version
from deepva_watch.media.fingerprint import fingerprint_descriptor
from deepva_watch.media.probe import probe
from deepva_watch.media.sniff import Sniffed, sniff_descriptor
from deepva_watch.sidecars.prior import find_prior_result
from deepva_watch.stages.publish import sidecar_settings
from deepva_watch.states import State

log = structlog.get_logger("deepva_watch.sniff")


def sniff_asset(services: Services, asset: Asset) -> Outcome:
    folder = services.folder(asset)
    try:
        with open_version(folder.path.absolute(), asset.relpath, follow_symlinks=folder.follow_symlinks,
                          size=asset.size, mtime_ns=asset.mtime_ns) as descriptor:
            verdict = sniff_descriptor(descriptor)
            if not isinstance(verdict, Sniffed):
                return Advance(State.REJECTED, {"last_error": verdict.reason})
            identity = identity_of(descriptor)
            facts: dict[str, Any] = {
                "mime": verdict.mime, "kind": verdict.kind, "content_hash": fingerprint_descriptor(descriptor),
                "device": identity.device, "inode": identity.inode,
            }
            if verdict.kind == "video":
                facts["media_seconds"] = probe(descriptor_path(descriptor), verdict.mime, "video",
                                               pass_fds=(descriptor,)).duration_seconds
    except VersionChanged as changed:
        return changed_outcome(changed, "the file changed after it settled")
    except FileNotFoundError:
        return gone()
    except PermissionError as error:
        return Retry(f"cannot read the file: {error.strerror}")
    prior = find_prior_result(services.path_of(asset), watch_root=folder.path.absolute(), settings=sidecar_settings(folder),
                              kind=verdict.kind)
    if prior is not None and prior.covers(facts["content_hash"], folder.modules):
        log.info("adopted", job_id=prior.job_id, note="its sidecars already hold this job's results for the same "
                 "content and modules: published without a new job")
        return Advance(State.PUBLISHED, {
            **facts, "job_id": prior.job_id, "job_state": "completed", "published_at": services.clock.now(),
            "xmp_path": str(prior.xmp) if prior.xmp else None, "json_path": str(prior.json) if prior.json else None})
    return Advance(State.ACCEPTED, facts)
