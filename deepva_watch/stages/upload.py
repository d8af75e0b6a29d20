"""UPLOAD: hand the file to DeepVA storage (for folders whose source uploads; others only re-check the file).

The storage URL is committed with the transition to ``uploaded``, so a crash after the upload does not upload again.
An upload cut off after bytes went out may leave a partial object in storage: the row remembers that it tried
(``upload_attempted``), and the next attempt first removes what it left there, found by its unique storage name.
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from deepva_watch.deepva import DeepVAError, SourceChanged
from deepva_watch.flow import Advance, Changed, Outcome, Retry, Services
from deepva_watch.flow.budget import BudgetState, budget_state, wait_for_tomorrow
from deepva_watch.flow.policy import changed_outcome, outcome_for
from deepva_watch.ledger import Asset
from deepva_watch.media.files import VersionChanged, open_version
from deepva_watch.sources import source_for
from deepva_watch.states import State

log = structlog.get_logger("deepva_watch.upload")


def storage_name(asset: Asset) -> str:
    """Unique per asset version, so leftovers of a cut-off upload can be found and removed before the next attempt
    without touching anyone else's objects."""
    return f"{asset.asset_id}_{PurePosixPath(asset.relpath).name}"


def upload_window(services: Services) -> int:
    """Uploads may run ahead of job creation only by a window, so storage does not fill with waiting files."""
    config = services.config
    window = max(config.max_uploads, config.max_active_jobs)
    return window - services.ledger.count_in((State.UPLOADING, State.UPLOADED))


@dataclass(frozen=True)
class Uploads:
    """What a batch of uploads shares: the day's spending, read once (uploads spend nothing; job creation does)."""

    services: Services
    budget: BudgetState | None


def begin(services: Services, assets: Sequence[Asset]) -> Uploads:
    return Uploads(services, budget_state(services.config.budget, services.ledger, services.clock.now()))


def upload(batch: Uploads, asset: Asset) -> Outcome:
    """At the daily cap for the file's kind it waits for the next day; otherwise it goes to storage."""
    services = batch.services
    if batch.budget is not None and batch.budget.left(asset.kind) <= 0:
        return wait_for_tomorrow(batch.budget, asset.kind)
    folder = services.folder(asset)
    try:
        with open_version(folder.path.absolute(), asset.relpath, follow_symlinks=folder.follow_symlinks,
                          size=asset.size, mtime_ns=asset.mtime_ns, identity=asset.identity) as descriptor:
            if not source_for(folder).uploads:
                return Advance(State.UPLOADED, {"storage_url": None, "storage_id": None})
            if asset.upload_attempted:
                _remove_leftovers(services, folder.storage_folder, storage_name(asset))
            with services.transfers.start(asset.asset_id, asset.folder, asset.relpath, asset.size) as transfer, \
                    open(descriptor, "rb", buffering=0, closefd=False) as handle:
                stored = services.client.upload(handle, folder=folder.storage_folder, filename=storage_name(asset),
                                                throttle=services.upload_throttle, on_progress=transfer.sent)
    except VersionChanged as changed:
        return changed_outcome(changed, "the file changed before upload")
    except SourceChanged:
        try:
            info = os.stat(services.path_of(asset), follow_symlinks=folder.follow_symlinks)  # as settling looked at it
        except FileNotFoundError:
            return Advance(State.GONE, {"last_error": "the file disappeared during upload"})
        return Changed(info.st_size, info.st_mtime_ns, "the file changed during upload; the new version follows")
    except (DeepVAError, OSError) as error:
        outcome = outcome_for(error)
        if isinstance(outcome, Retry):
            return Retry(outcome.error, outcome.delay, outcome.counts, {"upload_attempted": 1})
        return outcome
    return Advance(State.UPLOADED, {"storage_url": stored.url, "storage_id": stored.id, "upload_attempted": 0})


def _remove_leftovers(services: Services, storage_folder: str, name: str) -> None:
    for stored in services.client.list_storage(storage_folder):
        if stored.name == name:
            log.info("storage_leftover_deleted", storage_id=stored.id, name=name)
            services.client.delete_storage(stored.id)
