"""Retention: what guards against paying twice stays; everything else older than the limit goes."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from deepva_watch.states import State
from deepva_watch.watch.retention import DAY_SECONDS, Retention
from tests.flow.conftest import Flow, one_folder

S = State


def _publish(flow: Flow, *names: str) -> None:
    flow.drop(*names)
    flow.publish_all(rounds=6)


def test_only_rows_that_guard_nothing_go_and_history_with_them(tmp_path: Path) -> None:
    flow = one_folder(tmp_path, {"ledger_retention_days": 30})
    watch = flow.watch
    _publish(flow, "kept.png", "deleted.png", "changed.png", "vanished-early.png")
    (watch / "deleted.png").unlink()
    with (watch / "changed.png").open("ab") as grown:
        grown.write(b"\0")
    flow.clock.advance(60)
    flow.drop()  # the changed file's new version; nothing else moves
    ledger = flow.services.ledger
    (watch / "vanished-early.png").unlink()
    flow.drop("late.png")
    flow.clock.advance(2)
    flow.run("settle")
    before = {(row.relpath, row.state) for row in ledger.query()}
    flow.clock.advance(31 * DAY_SECONDS)

    retired, pruned = Retention(flow.services, threading.Event()).sweep()

    after = {(row.relpath, row.state) for row in ledger.query()}
    assert before - after == {("deleted.png", S.PUBLISHED), ("vanished-early.png", S.PUBLISHED),
                              ("changed.png", S.PUBLISHED)}, "the deleted files and the replaced version went"
    assert {("kept.png", S.PUBLISHED), ("changed.png", S.SETTLED), ("late.png", S.SETTLED)} <= after
    assert retired == 3 and pruned > 0
    kept = ledger.latest_version(str(watch), "kept.png")
    assert kept is not None and ledger.history([kept.asset_id]) == [], "old history of a kept row is pruned"
    in_flight = ledger.latest_version(str(watch), "late.png")
    assert in_flight is not None and ledger.history([in_flight.asset_id]), "a row in flight keeps its story"


def test_nothing_goes_while_the_folder_is_unreachable(tmp_path: Path) -> None:
    flow = one_folder(tmp_path, {"ledger_retention_days": 1})
    watch = flow.watch
    _publish(flow, "a.png")
    shutil.rmtree(watch)  # the share dropped: its mount point is gone
    flow.clock.advance(2 * DAY_SECONDS)
    retired, _ = Retention(flow.services, threading.Event()).sweep()
    assert retired == 0 and [row.state for row in flow.services.ledger.query()] == [S.PUBLISHED]
