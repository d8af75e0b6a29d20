"""Retention: the ledger keeps what guards against paying twice and lets the rest go after ``ledger_retention_days``.

A row goes once it is final, unchanged for that long, and guards nothing: a version that vanished (``gone``) or was
replaced (``superseded``), an older version of a path that has a newer one, or the newest version of a file that is no
longer in its folder (one ``lstat``, and only while the folder is reachable: a share that dropped must not look like
deletions, and rows of a folder no longer configured stay). History entries of final rows older than that go too. The
newest version of a file still present always stays, whatever its state, so the file is never submitted again.
"""

from __future__ import annotations

import os
import threading

import structlog

from deepva_watch.flow import Services
from deepva_watch.ledger import Asset
from deepva_watch.states import State
from deepva_watch.watch.discover import root_problem

log = structlog.get_logger("deepva_watch.retention")

DAY_SECONDS = 86400.0
#: The first sweep waits this long after a start, so that starting stays quick.
FIRST_SWEEP_SECONDS = 3600.0
PAGE = 1000
HISTORY_PAGE = 10000


class Retention:
    def __init__(self, services: Services, stop: threading.Event) -> None:
        self.services = services
        self.stop = stop

    def run_forever(self) -> None:
        wait = FIRST_SWEEP_SECONDS
        while not self.stop.wait(wait):
            try:
                self.sweep()
            except Exception as error:  # the ledger failed (disk full, locked): tomorrow again
                log.error("retention_failed", error=repr(error)[:300])
            wait = DAY_SECONDS

    def sweep(self) -> tuple[int, int]:
        """One pass over the ledger: (rows retired, history entries pruned)."""
        days = self.services.config.ledger_retention_days
        before = self.services.clock.now() - days * DAY_SECONDS
        ledger = self.services.ledger
        reachable: dict[str, bool] = {}
        retired, after_id = 0, 0
        while not self.stop.is_set():
            rows = ledger.retirement_candidates(before, after_id, PAGE)
            if not rows:
                break
            after_id = rows[-1].id
            retired += ledger.retire([row.id for row in rows if self._guards_nothing(row, reachable)], before)
        pruned = 0
        while not self.stop.is_set() and (count := ledger.prune_history(before, HISTORY_PAGE)):
            pruned += count
        log.info("retention", rows_retired=retired, history_pruned=pruned, older_than_days=days)
        return retired, pruned

    def _guards_nothing(self, row: Asset, reachable: dict[str, bool]) -> bool:
        if row.state in (State.GONE, State.SUPERSEDED):
            return True
        latest = self.services.ledger.latest_version(row.folder, row.relpath)
        if latest is not None and latest.id != row.id:
            return True
        if not self.services.knows_folder(row):
            return False
        folder = self.services.folder(row)
        if row.folder not in reachable:
            reachable[row.folder] = root_problem(folder) is None
        return reachable[row.folder] and not os.path.lexists(folder.path.absolute() / row.relpath)
