"""After publishing: delete the job and the storage copy at DeepVA, when the config asks for it.

Not a step of the flow: a published row is final, and its results are safe on disk. Deleting before the row says
published would leave a step repeated after a crash nothing to fetch, so a published row carries a mark
(``cleanup_pending``) until every deletion owed is done; one DeepVA refused or a crash cut off is tried again a minute
later. A failure costs DeepVA storage, never results: it is logged and never fails the file. Deleting twice is
harmless.
"""

from __future__ import annotations

import math
import threading

import structlog

from deepva_watch.deepva import DeepVAError
from deepva_watch.flow import Services
from deepva_watch.ledger import Asset

log = structlog.get_logger("deepva_watch.clean_up")

RETRY_SECONDS = 60.0
BATCH = 100


class CleanUp:
    def __init__(self, services: Services, stop: threading.Event) -> None:
        self.services = services
        self.stop = stop
        self.wakeup = threading.Event()

    def run_forever(self) -> None:
        due_by = math.inf  # at start, every deletion still owed, whenever it was last tried
        while not self.stop.is_set():
            try:
                self.sweep(due_by)
            except Exception as error:  # the ledger failed (disk full, locked): try again on the next turn
                log.error("clean_up_failed", error=repr(error)[:300])
            self.wakeup.wait(RETRY_SECONDS)
            self.wakeup.clear()
            due_by = self.services.clock.now()

    def sweep(self, due_by: float | None = None) -> int:
        """The deletions due by ``due_by`` (default now); returns how many rows are now clean. Rests while the key is
        refused."""
        cleaned = 0
        while self.services.gate.is_open and not self.stop.is_set():
            rows = self.services.ledger.pending_clean_ups(
                self.services.clock.now() if due_by is None else due_by, BATCH)
            done = sum(self.clean(asset) for asset in rows)
            cleaned += done
            if len(rows) < BATCH or not done:  # the rest refused too: a minute from now
                break
        return cleaned

    def clean(self, asset: Asset) -> bool:
        config, client, ledger = self.services.config, self.services.client, self.services.ledger
        try:
            if config.delete_storage_after_completion and asset.storage_id:
                client.delete_storage(asset.storage_id)
                log.info("storage_deleted", storage_id=asset.storage_id, path=asset.relpath, asset_id=asset.asset_id)
            if config.delete_job_after_publish and asset.job_id:
                client.delete_job(asset.job_id)
                log.info("job_deleted", job_id=asset.job_id, path=asset.relpath, asset_id=asset.asset_id)
        except DeepVAError as error:
            log.warning("cleanup_failed", error=str(error), path=asset.relpath, asset_id=asset.asset_id)
            ledger.clean_up_later(asset.id, self.services.clock.now() + RETRY_SECONDS)
            return False
        ledger.clean_up_done(asset.id)
        return True
