"""Never pay twice: files present when a folder is first watched, results already in our sidecars, a daily budget.

Deterministic runs of the real stages over real files and a real ledger (see tests/flow/conftest.py), with the
stand-in for DeepVA recording every call.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from deepva_watch.cli import main
from deepva_watch.states import State
from deepva_watch.watch.discover import reconcile
from tests.conftest import FIXTURES
from tests.flow.conftest import FakeClient, Flow, make_flow, one_folder

S = State


def _flow(tmp_path: Path, client: FakeClient | None = None, top: dict[str, Any] | None = None, **folder: Any) -> Flow:
    return one_folder(tmp_path, top, client, modules={"face_recognition": {}}, **folder)


def _states(flow: Flow) -> dict[str, str]:
    return {row.relpath: row.state for row in flow.services.ledger.query()}


def test_skip_records_what_is_there_and_processes_only_what_arrives_or_changes(tmp_path: Path) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    for name in ("old-1.png", "old-2.png"):
        shutil.copy(FIXTURES / "sample.png", watch / name)
    flow = _flow(tmp_path, existing="skip")
    flow.drop()  # the first scan
    assert _states(flow) == {"old-1.png": S.SKIPPED, "old-2.png": S.SKIPPED}

    restarted = make_flow_again(flow)  # a restart: a new ledger connection, a new first look at the folder
    restarted.drop("new.png")
    with (watch / "old-2.png").open("ab") as changed:
        changed.write(b"\0")
    reconcile(restarted.services.ledger, restarted.config.folders[0], restarted.clock.now())
    restarted.publish_all()

    latest = {row.relpath: row.state for row in sorted(restarted.services.ledger.query(), key=lambda row: row.id)}
    assert latest == {"old-1.png": S.SKIPPED, "old-2.png": S.PUBLISHED, "new.png": S.PUBLISHED}
    assert restarted.client.calls.count("create_job") == 2


def make_flow_again(flow: Flow) -> Flow:
    """The same folder and ledger file, as a daemon started again sees them."""
    return make_flow({"ledger": str(flow.config.ledger), "folders": [
        {"path": str(flow.watch), "modules": dict(flow.config.folders[0].modules), "settle_seconds": 1,
         "existing": flow.config.folders[0].existing if isinstance(flow.config.folders[0].existing, str)
         else {"newer_than": flow.config.folders[0].existing.newer_than}}]}, flow.client)


def test_newer_than_processes_only_recent_files(tmp_path: Path) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    week_ago = time.time() - 8 * 86400
    for name, mtime in (("archive.png", week_ago), ("recent.png", time.time() - 3600)):
        shutil.copy(FIXTURES / "sample.png", watch / name)
        os.utime(watch / name, (mtime, mtime))
    flow = _flow(tmp_path, existing={"newer_than": "7d"})
    flow.clock.t = time.time()
    flow.drop()
    assert _states(flow) == {"archive.png": S.SKIPPED, "recent.png": S.SETTLING}


def test_a_folder_already_in_the_ledger_is_not_first_watched_again(tmp_path: Path) -> None:
    """Upgrading a ledger whose folder has rows, or changing the rule later, never skips what was queued."""
    flow = _flow(tmp_path)
    flow.drop("queued.png")
    later = make_flow({"ledger": str(flow.config.ledger), "folders": [
        {"path": str(flow.watch), "modules": {"face_recognition": {}}, "existing": "skip"}]})
    later.drop("after-the-change.png")
    assert _states(later) == {"queued.png": S.SETTLING, "after-the-change.png": S.SETTLING}


def test_results_in_our_sidecars_are_adopted_when_the_ledger_is_lost(tmp_path: Path) -> None:
    flow = _flow(tmp_path)
    flow.drop("a.png", "b.png", "c.png")
    flow.publish_all()
    jobs = {row.relpath: row.job_id for row in flow.services.ledger.query()}
    assert set(_states(flow).values()) == {S.PUBLISHED} and len(flow.client.jobs) == 3
    with (flow.watch / "b.png").open("ab") as changed:  # changed since its sidecars were written
        changed.write(b"\0")
    for suffix in ("", "-wal", "-shm"):
        Path(str(flow.config.ledger) + suffix).unlink(missing_ok=True)

    fresh = make_flow({"ledger": str(flow.config.ledger), "folders": [
        {"path": str(flow.watch), "modules": {"face_recognition": {}}, "settle_seconds": 1}]}, flow.client)
    fresh.drop()
    fresh.publish_all()

    rows = {row.relpath: row for row in fresh.services.ledger.query()}
    assert {path: row.state for path, row in rows.items()} == {path: S.PUBLISHED for path in ("a.png", "b.png",
                                                                                              "c.png")}
    assert rows["a.png"].job_id == jobs["a.png"] and rows["c.png"].job_id == jobs["c.png"], "adopted, no new job"
    assert rows["b.png"].job_id not in jobs.values(), "the changed file is processed again"
    assert len(flow.client.jobs) == 4
    assert rows["a.png"].xmp_path and Path(rows["a.png"].xmp_path).is_file()


def test_other_modules_are_not_adopted(tmp_path: Path) -> None:
    flow = _flow(tmp_path)
    flow.drop("a.png")
    flow.publish_all()
    Path(flow.config.ledger).unlink()
    other = make_flow({"ledger": str(tmp_path / "other.sqlite3"), "folders": [
        {"path": str(flow.watch), "modules": {"face_recognition": {"model": "custom"}}, "settle_seconds": 1}]},
        flow.client)
    other.drop()
    other.clock.advance(2)
    other.run("settle", "sniff")
    assert other.only().state == S.ACCEPTED


def test_a_name_with_no_room_for_a_sidecar_is_looked_up_as_having_none(tmp_path: Path) -> None:
    flow = _flow(tmp_path)
    name = "x" * 251 + ".png"  # 255 bytes: the file may exist, its sidecar name may not
    flow.drop(name)
    flow.clock.advance(2)
    flow.run("settle", "sniff")
    assert flow.only().state == S.ACCEPTED


def test_at_the_daily_cap_files_wait_for_the_next_day_and_nothing_fails(tmp_path: Path) -> None:
    flow = _flow(tmp_path, top={"budget": {"images_per_day": 2, "time_zone": "UTC"}})
    flow.clock.t = 1_767_225_600.0 + 10 * 3600  # 2026-01-01 10:00 UTC
    flow.drop("1.png", "2.png", "3.png")
    flow.clock.advance(2)
    for _ in range(6):
        flow.run("settle", "sniff", "upload", "submit")
    rows = flow.services.ledger.query()
    assert sorted(row.state for row in rows) == [S.SUBMITTED, S.SUBMITTED, S.UPLOADED]
    waiting = next(row for row in rows if row.state == S.UPLOADED)
    assert waiting.last_error == f"budget reached until {_local_hhmm(1_767_312_000.0)} (2 images per day)"
    assert waiting.next_attempt_at == 1_767_312_000.0 and waiting.attempts == 0
    flow.clock.t = 1_767_312_000.0 + 1  # the next day
    for _ in range(3):
        flow.run("upload", "submit")
    assert sorted(row.state for row in flow.services.ledger.query()) == [S.SUBMITTED] * 3


def _local_hhmm(at: float) -> str:
    return time.strftime("%H:%M", time.localtime(at))


def test_status_shows_the_days_spending_and_until_when_work_waits(tmp_path: Path, capsys) -> None:
    flow = _flow(tmp_path, top={"budget": {"images_per_day": 1}})
    flow.clock.t = time.time()
    flow.drop("1.png", "2.png")
    flow.clock.advance(2)
    for _ in range(4):
        flow.run("settle", "sniff", "upload", "submit")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"ledger": str(flow.config.ledger), "budget": {"images_per_day": 1},
                                      "api": {"key_file": str(tmp_path / "key")},
                                      "folders": [{"path": str(flow.watch), "modules": {"m": {}}}]}))
    (tmp_path / "key").write_text("k")

    assert main(["status", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "budget today: 1 of 1 images; budget reached until " in out and "(1 images per day)" in out
