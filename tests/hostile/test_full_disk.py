"""A full or read-only disk under the sidecars or the ledger: a clear error, a later retry, nothing half-written.

Sidecar writes run on pyfakefs with a disk size that runs out in the middle of the JSON sidecar. The ledger is SQLite
(C code that pyfakefs cannot see), so it gets a real 1 MiB tmpfs, and the read-only sidecar target is a real read-only
bind mount; both need root (mount) and skip with the reason otherwise.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from deepva_watch.deepva.models import Job, Segment
from deepva_watch.media import MediaFacts
from deepva_watch.flow import Retry
from deepva_watch.flow.policy import outcome_for
from deepva_watch.sidecars import Provenance, SidecarSettings, publish_results
from tests.conftest import FIXTURES, ledger_rows, mount_or_skip, small_tmpfs, unmount, wait_for, write_config
from tests.hostile.conftest import rows_when_final


def _job() -> Job:
    return Job(id="job-1", tag="t", state="completed", progress=1.0, sources=("storage://x",), modules={})


def _segments(count: int) -> Iterator[Segment]:
    for number in range(count):
        yield Segment(module="object_scene_recognition", source="storage://x", media_type="image",
                      label=f"label {number} " + "x" * 200, kind="object", confidence=0.5, frame_start=None,
                      frame_end=None, time_start=None, time_end=None, tc_start=None, tc_end=None)


def _provenance() -> Provenance:
    now = datetime.now(timezone.utc)
    return Provenance(job_id="job-1", modules={}, processed_at=now, daemon_version="test", source_hash="h",
                      source_size=3, source_mtime=now, asset_id="a1")


def test_disk_full_while_writing_a_sidecar_leaves_the_old_one_and_no_temporary(fs):
    watch = Path("/media/watch")
    watch.mkdir(parents=True)
    media = watch / "photo.jpg"
    media.write_bytes(b"\xff\xd8\xff" + b"\0" * 100)
    old_json = watch / "photo.jpg.deepva.json"
    old_json.write_text('{"old": true}')
    fs.set_disk_usage(200_000, path="/")  # the old files fit; a JSON sidecar of 5000 segments (~1.5 MB) does not

    with pytest.raises(OSError) as caught:
        publish_results(media, watch_root=watch, settings=SidecarSettings(), job=_job(), segments=_segments(5000),
                        media=MediaFacts(kind="image", mime="image/jpeg"), provenance=_provenance())

    assert caught.value.errno == errno.ENOSPC
    assert old_json.read_text() == '{"old": true}'
    assert sorted(p.name for p in watch.iterdir()) == ["photo.jpg", "photo.jpg.deepva.json"], "temporary left behind"
    outcome = outcome_for(caught.value)
    assert isinstance(outcome, Retry) and not outcome.counts and "No space left on device" in outcome.error

    fs.set_disk_usage(50_000_000, path="/")  # space is back: the next attempt writes both sidecars
    written = publish_results(media, watch_root=watch, settings=SidecarSettings(), job=_job(), segments=_segments(5000),
                              media=MediaFacts(kind="image", mime="image/jpeg"), provenance=_provenance())
    assert written.json == old_json and written.xmp == watch / "photo.jpg.xmp"
    import json

    assert len(json.loads(old_json.read_text())["detailed_results"]) == 5000


def test_ledger_on_a_full_disk_fails_cleanly_and_recovers_intact(tmp_path):
    from deepva_watch.ledger import SqliteLedger

    with small_tmpfs(tmp_path / "small-disk", "1m") as disk:
        ledger = SqliteLedger(disk / "ledger.sqlite3")
        now = time.time()
        for number in range(20):
            ledger.observe("/watch", f"before-{number}.jpg", 100, number, now)
        filler = disk / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)  # take every byte that is left (unbuffered)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
        finally:
            os.close(fd)
        failure: BaseException | None = None
        written = 0
        for number in range(5000):
            try:
                ledger.observe("/watch", f"during-{number}-" + "n" * 200 + ".jpg", 100, number, now)
                written += 1
            except sqlite3.OperationalError as error:
                failure = error
                break
        assert failure is not None, "the ledger never noticed the disk was full"
        assert "full" in str(failure).lower(), str(failure)  # "database or disk is full": clear enough to act on

        filler.unlink()  # space is back: work continues on the same connection, and nothing was damaged
        ledger.observe("/watch", "after.jpg", 100, 1, now)
        assert ledger.latest_version("/watch", "after.jpg") is not None
        ledger.close()
        conn = sqlite3.connect(disk / "ledger.sqlite3")
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            count = conn.execute("SELECT count(*) FROM assets").fetchone()[0]
        finally:
            conn.close()
        assert count == 20 + written + 1  # every committed row is there, the failed one is not half there


def test_read_only_sidecar_target_is_retried_later_with_the_reason(tmp_path, emulator, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    out = tmp_path / "sidecars"
    out.mkdir()
    mount_or_skip("--bind", str(out), str(out))
    try:
        mount_or_skip("-o", "remount,bind,ro", str(out))
        shutil.copy(FIXTURES / "sample.jpg", watch / "a.jpg")
        daemon = daemon_factory(write_config(tmp_path, emulator.base_url, [watch],
                                             folder={"sidecars": {"output_dir": str(out)}}))
        ledger = tmp_path / "ledger.sqlite3"
        row = wait_for(lambda: [r for r in ledger_rows(ledger) if r["job_id"] and r["last_error"]], 60,
                       "publishing to fail")[0]
        assert row["state"] in ("completed", "publishing"), row
        assert "Read-only file system" in row["last_error"], row["last_error"]
        assert list(out.iterdir()) == []
        mount_or_skip("-o", "remount,bind,rw", str(out))
        rows = rows_when_final(ledger, 1, 60)
        assert daemon.stop() == 0
        assert rows[0]["state"] == "published"
        assert sorted(p.name for p in out.iterdir()) == ["a.jpg.deepva.json", "a.jpg.xmp"]
    finally:
        unmount(out)
