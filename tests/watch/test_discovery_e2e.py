"""Discovery through the whole daemon: a real process, the emulator over HTTP, real folders and media."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest

from deepva_watch.config import parse_config
from deepva_watch.deepva import SourceChanged
from deepva_watch.flow import Services, SystemClock
from deepva_watch.flow.runner import StageRunner
from deepva_watch.ledger import SqliteLedger
from deepva_watch.media.openfiles import OpenFiles
from deepva_watch.stages import STAGES
from deepva_watch.states import State
from deepva_watch.watch.discover import reconcile
from tests.conftest import FIXTURES, ledger_rows, wait_for, write_config


def _published(ledger, count):
    rows = ledger_rows(ledger)
    return rows if len(rows) == count and all(row["state"] == "published" for row in rows) else []


@pytest.mark.parametrize("mode", ["poll", "events"])
def test_a_slow_writer_is_not_submitted_before_it_is_complete(tmp_path, emulator, daemon_factory, mode):
    """Chunks arrive every 0.5 s, longer than the 0.2 s quiet period: only seeing the open writer keeps us waiting."""
    watch = tmp_path / "watch"
    watch.mkdir()
    config = write_config(tmp_path, emulator.base_url, [watch], folder={"watch": mode, "poll_interval_seconds": 0.2})
    daemon = daemon_factory(config)
    wait_for(lambda: '"watching"' in daemon.log_text(), 30, "the daemon to watch")
    data = (FIXTURES / "sample.mp4").read_bytes()
    chunks = 8
    step = len(data) // chunks + 1
    with open(watch / "growing.mp4", "wb") as writer:
        for start in range(0, len(data), step):
            writer.write(data[start:start + step])
            writer.flush()
            time.sleep(0.5)
            assert emulator.stats()["uploads_completed"] == 0, "uploaded while the writer was still writing"
    rows = wait_for(lambda: _published(tmp_path / "ledger.sqlite3", 1), 60, "the complete file published")
    assert rows[0]["size"] == len(data)
    stats = emulator.stats()
    assert stats["uploads_completed"] == 1 and stats["bytes_uploaded"] >= len(data) and stats["jobs_created"] == 1
    assert daemon.stop() == 0


def test_a_file_deleted_before_submission_ends_gone_quietly(tmp_path, emulator, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    daemon = daemon_factory(write_config(tmp_path, emulator.base_url, [watch], folder={"settle_seconds": 3}))
    wait_for(lambda: '"watching"' in daemon.log_text(), 30, "the daemon to watch")
    shutil.copy(FIXTURES / "sample.jpg", watch / "doomed.jpg")
    wait_for(lambda: ledger_rows(tmp_path / "ledger.sqlite3"), 30, "the file recorded")
    (watch / "doomed.jpg").unlink()
    rows = wait_for(lambda: [r for r in ledger_rows(tmp_path / "ledger.sqlite3") if r["state"] == "gone"], 30, "gone")
    assert len(rows) == 1 and emulator.stats()["uploads_completed"] == 0
    assert daemon.stop() == 0
    about_it = [line for line in daemon.log_text().splitlines() if "doomed.jpg" in line]
    assert about_it and not [line for line in about_it if '"level": "error"' in line or '"level": "warning"' in line]


def test_a_share_that_drops_and_returns_is_not_submitted_again(tmp_path, emulator, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    ledger = tmp_path / "ledger.sqlite3"
    daemon = daemon_factory(write_config(tmp_path, emulator.base_url, [watch], folder={"watch": "poll"}))
    for name in ("sample.jpg", "sample.png"):
        shutil.copy(FIXTURES / name, watch / name)
    before = wait_for(lambda: _published(ledger, 2), 60, "both files published")
    watch.rename(tmp_path / "dropped")
    wait_for(lambda: "folder_paused" in daemon.log_text(), 30, "the pause")
    (tmp_path / "dropped").rename(watch)
    wait_for(lambda: "folder_resumed" in daemon.log_text(), 30, "the resume")
    wait_for(lambda: daemon.log_text().count('"why": "folder back"') >= 1, 30, "the reconcile after the resume")
    time.sleep(1.0)
    assert ledger_rows(ledger) == before, "nothing gone, nothing new"
    assert emulator.stats()["jobs_created"] == 2 and emulator.stats()["uploads_completed"] == 2
    assert daemon.stop() == 0


def test_a_writer_holding_the_file_open_is_seen(tmp_path):
    path = tmp_path / "open.mxf"
    files = OpenFiles(ttl=0)
    if not files.available:
        pytest.skip("no /proc on this platform")
    with open(path, "wb") as writer:
        writer.write(b"x")
        assert files.open_for_writing(path)
        with open(path, "rb"):
            pass
    assert not files.open_for_writing(path)
    with open(path, "rb"):
        assert not files.open_for_writing(path), "a reader is not a writer"


class _ChangingClient:
    """Appends to the file while 'uploading' it, as a camera still writing would, and reports it as the client does."""

    def __init__(self) -> None:
        self.uploads = 0

    def upload(self, source, **kwargs):
        self.uploads += 1
        with open(f"/proc/self/fd/{source.fileno()}", "ab") as stream:  # the very file being uploaded
            stream.write(b"more")
        raise SourceChanged("POST", "http://127.0.0.1/storage/", reason="the file grew during the upload")


@pytest.mark.parametrize("linked", [False, True], ids=["file", "link in a folder that follows links"])
def test_a_file_that_changes_during_upload_is_discarded_and_picked_up_as_a_new_version(tmp_path, linked):
    watch = tmp_path / "watch"
    watch.mkdir()
    config = parse_config({"ledger": str(tmp_path / "l.sqlite3"),
                           "folders": [{"path": str(watch), "modules": {"m": {}}, "settle_seconds": 0,
                                        "follow_symlinks": linked}]})
    services = Services(config, SqliteLedger(config.ledger), _ChangingClient(), SystemClock())  # type: ignore[arg-type]
    runners = {stage.name: StageRunner(stage, services, threading.Event(), lambda state, due_at: None) for stage in STAGES}
    if linked:  # the new version is the linked file's, as settling sees it, not the link's own size
        shutil.copy(FIXTURES / "sample.jpg", tmp_path / "real.jpg")
        (watch / "a.jpg").symlink_to(tmp_path / "real.jpg")
    else:
        shutil.copy(FIXTURES / "sample.jpg", watch / "a.jpg")
    reconcile(services.ledger, config.folders[0], services.clock.now())
    for name in ("settle", "sniff", "upload"):
        runners[name].run_once()
    first, second = services.ledger.versions(str(watch.absolute()), "a.jpg")
    assert first.state == State.SUPERSEDED and "during upload" in first.last_error
    assert second.state == State.SETTLING and second.size == os.path.getsize(watch / "a.jpg")
    assert services.client.uploads == 1
