"""The one runner: a batch committed together, every transition logged with the file's identity, a crashing or
misbehaving step never losing its file, rows of a removed folder parked, and wake-ups that cost no idle work."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from deepva_watch.flow import Advance, Services, Stage, services_only
from deepva_watch.flow.runner import PARKED_SECONDS, StageRunner, wake
from deepva_watch.ledger import Asset
from deepva_watch.stages import STAGES
from deepva_watch.states import State
from tests.flow.conftest import Flow, one_folder

S = State


def _spy_on_commits(services: Services) -> list[int]:
    """The size of every commit the runners make."""
    sizes: list[int] = []
    many = services.ledger.transition_many

    def transition_many(moves: Any, now: float, *, stage: str | None = None) -> Any:
        sizes.append(len(moves))
        return many(moves, now, stage=stage)

    services.ledger.transition_many = transition_many  # type: ignore[method-assign]
    return sizes


def test_a_batch_is_committed_together(tmp_path: Path) -> None:
    flow = one_folder(tmp_path)
    flow.drop("a.png", "b.png", "c.png")
    flow.clock.advance(10)
    commits = _spy_on_commits(flow.services)
    flow.run("settle")
    assert commits == [3]
    assert flow.services.ledger.count_by_state() == {S.SETTLED: 3}


def test_every_transition_line_names_the_file(tmp_path: Path) -> None:
    flow = one_folder(tmp_path)
    flow.drop("a.png", "b.png")
    flow.clock.advance(10)
    with capture_logs() as logs:
        flow.run("settle")
    lines = [entry for entry in logs if entry["event"] == "transition"]
    assert sorted(line["path"] for line in lines) == ["a.png", "b.png"]
    for line in lines:
        assert line["folder"] == str(flow.watch) and line["asset_id"].startswith("dvw-")
        assert (line["from"], line["to"], line["stage"]) == ("settling", "settled", "settle")


def _replace_step(flow: Flow, name: str, step: Any) -> StageRunner:
    original = flow.runners[name]
    stage: Stage[Services] = Stage(name, original.stage.takes, step, services_only, batch=8)
    return StageRunner(stage, flow.services, threading.Event(), lambda state, due_at: None)


def test_a_crashing_step_is_retried_and_in_the_end_parked_with_the_reason(tmp_path: Path) -> None:
    flow = one_folder(tmp_path)
    flow.drop("a.png")
    flow.clock.advance(10)

    def broken(services: Services, asset: Asset) -> Advance:
        raise ZeroDivisionError("a bug")

    runner = _replace_step(flow, "settle", broken)
    with capture_logs() as logs:
        runner.run_once()
    row = flow.only()
    assert row.state == S.SETTLING and row.attempts == 1 and "internal error in settle" in (row.last_error or "")
    assert any(entry["event"] == "step_crashed" for entry in logs)


def test_a_step_may_not_take_a_row_where_the_state_machine_forbids(tmp_path: Path) -> None:
    flow = one_folder(tmp_path)
    flow.drop("a.png")
    flow.clock.advance(10)
    runner = _replace_step(flow, "settle", lambda services, asset: Advance(S.PUBLISHED))
    runner.run_once()
    row = flow.only()
    assert row.state == S.SETTLING and "may not move a file from settling to published" in (row.last_error or "")


def test_rows_of_a_folder_removed_by_a_reload_are_parked_not_lost(tmp_path: Path) -> None:
    flow = one_folder(tmp_path)
    flow.drop("a.png")
    flow.clock.advance(10)
    other = tmp_path / "other"
    other.mkdir()
    flow.services.use(type(flow.config)(folders=(type(flow.config.folders[0])(path=other, modules={"m": {}}),),
                                        ledger=flow.config.ledger))
    flow.run("settle")
    row = flow.only()
    assert row.state == S.SETTLING and row.next_attempt_at == flow.clock.now() + PARKED_SECONDS


def test_a_resting_worker_is_woken_only_for_rows_due_before_it_looks_again(tmp_path: Path) -> None:
    """A job submitted now is first polled on the next grid time: waking the tracker for each would cost a ledger
    look and two thread switches per job. A freed slot always wakes the stage waiting for it."""
    flow = one_folder(tmp_path)
    track, submit = flow.runners["track"], flow.runners["submit"]
    for runner in (track, submit):
        runner.idle, runner.sleeps_until = True, flow.clock.now() + 0.5

    wake([track, submit], S.SUBMITTED, flow.clock.now() + 2.0)
    assert not track.wakeup.is_set()
    wake([track, submit], S.SUBMITTED, flow.clock.now() + 0.2)
    assert track.wakeup.is_set()

    track.wakeup.clear()
    track.idle = False  # busy: it may have read the ledger before the row landed, so it must look again
    wake([track, submit], S.SUBMITTED, flow.clock.now() + 60.0)
    assert track.wakeup.is_set()

    wake([track, submit], S.COMPLETED, flow.clock.now() + 60.0)  # a job ended: a slot is free now
    assert submit.wakeup.is_set()


def test_rows_landing_together_wake_as_many_resting_workers(tmp_path: Path) -> None:
    """Three publishing workers at rest and two jobs finishing in one commit: two workers start, not one twice."""
    flow = one_folder(tmp_path)
    stage = next(stage for stage in STAGES if stage.name == "publish")
    workers = [StageRunner(stage, flow.services, threading.Event(), lambda *_: None) for _ in range(3)]
    for worker in workers:
        worker.idle = True
    for _ in range(2):
        wake(workers, S.COMPLETED)
    assert [worker.wakeup.is_set() for worker in workers] == [True, True, False]
    for _ in range(2):  # more rows than resting workers: the ones woken already will find them
        wake(workers, S.COMPLETED)
    assert all(worker.wakeup.is_set() for worker in workers)
