"""End to end: the daemon as a real process, the emulator over real HTTP, real folders and real media files."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import API_KEY, FIXTURES, ledger_rows, wait_for, write_config

MEDIA = ["sample.jpg", "sample.png", "sample.mp4", "sample.mpg", "sample.mxf", "sample.mov"]
DC_SUBJECT = "{http://purl.org/dc/elements/1.1/}subject"
RDF_LI = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}li"


def _states(ledger: Path) -> dict[str, str]:
    return {row["relpath"]: row["state"] for row in ledger_rows(ledger)}


def _all_final(ledger: Path, expected: int) -> list[dict]:
    rows = ledger_rows(ledger)
    final = {"published", "rejected", "failed", "gone"}
    return rows if len(rows) == expected and all(row["state"] in final for row in rows) else []


def _xmp_subjects(path: Path) -> list[str]:
    root = ET.fromstring(path.read_bytes())
    return [li.text or "" for subject in root.iter(DC_SUBJECT) for li in subject.iter(RDF_LI)]


def test_each_media_type_ends_with_both_sidecars_matching_the_job(tmp_path, emulator, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    config = write_config(tmp_path, emulator.base_url, [watch])
    daemon = daemon_factory(config)
    for name in MEDIA:
        shutil.copy(FIXTURES / name, watch / name)

    rows = wait_for(lambda: _all_final(tmp_path / "ledger.sqlite3", len(MEDIA)), 90, "all files published")
    assert {row["relpath"]: row["state"] for row in rows} == {name: "published" for name in MEDIA}, daemon.log_text()

    jobs = {job["tag"]: job for job in emulator.jobs()}
    assert len(jobs) == len(MEDIA)
    xmp_paths = set()
    for row in rows:
        job = jobs[row["asset_id"]]
        assert job["state"] == "completed"
        labels = {item["label"] for source in job["result"]["summary"] for item in source["items"]}
        assert labels, f"the emulator found nothing in {row['relpath']}"

        sidecar = json.loads(Path(row["json_path"]).read_text(encoding="utf-8"))
        assert Path(row["json_path"]).parent == watch
        assert sidecar["job"]["id"] == job["id"] == row["job_id"]
        assert sidecar["job"]["state"] == "completed"
        assert {item["label"] for source in sidecar["summary"] for item in source["items"]} == labels
        assert sidecar["asset"]["size"] == (watch / row["relpath"]).stat().st_size

        xmp = Path(row["xmp_path"])
        assert xmp.parent == watch and xmp not in xmp_paths, "two media files must never share an XMP sidecar"
        xmp_paths.add(xmp)
        assert set(_xmp_subjects(xmp)) == labels

    assert daemon.stop() == 0
    leftovers = [p.name for p in watch.iterdir() if ".tmp" in p.name]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    # the key reaches DeepVA and nothing else: not the log, not the ledger, not a sidecar
    assert '"event": "transition"' in daemon.log_text()
    for written in [tmp_path / "ledger.sqlite3", daemon.log_path, *watch.iterdir()]:
        assert API_KEY.encode() not in written.read_bytes(), f"the API key leaked into {written}"


def test_text_file_named_jpg_is_rejected_and_never_uploaded(tmp_path, emulator, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    daemon = daemon_factory(write_config(tmp_path, emulator.base_url, [watch]))
    shutil.copy(FIXTURES / "text-named.jpg", watch / "holiday.jpg")
    shutil.copy(FIXTURES / "html-named.jpg", watch / "error-page.jpg")
    shutil.copy(FIXTURES / "sample.jpg", watch / "real.jpg")

    rows = wait_for(lambda: _all_final(tmp_path / "ledger.sqlite3", 3), 60, "three files handled")
    by_name = {row["relpath"]: row for row in rows}
    assert by_name["real.jpg"]["state"] == "published"
    for name in ("holiday.jpg", "error-page.jpg"):
        assert by_name[name]["state"] == "rejected"
        assert "not a supported media type" in by_name[name]["last_error"]
    stats = emulator.stats()
    assert stats["storage_objects"] == 1, "only the real JPEG may be uploaded"
    assert stats["jobs_created"] == 1
    assert "rejected" in daemon.log_text() and "holiday.jpg" in daemon.log_text()
    assert not (watch / "holiday.jpg.xmp").exists() and not (watch / "holiday.jpg.deepva.json").exists()
    daemon.stop()


def test_sigkill_after_submission_tracks_the_same_job_after_restart(tmp_path, emulator, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    ledger = tmp_path / "ledger.sqlite3"
    config = write_config(tmp_path, emulator.base_url, [watch])
    emulator.set_processing_time(5.0)
    first = daemon_factory(config)
    shutil.copy(FIXTURES / "sample.mp4", watch / "clip.mp4")
    wait_for(lambda: _states(ledger).get("clip.mp4") == "submitted", 60, "the job to be submitted")
    first.kill()
    assert first.process.returncode == -signal.SIGKILL
    assert emulator.jobs()[0]["state"] != "completed", "the kill must land before the job completes"

    emulator.set_processing_time(0.2)
    second = daemon_factory(config)
    rows = wait_for(lambda: _all_final(ledger, 1), 60, "the file to be published after the restart")
    assert rows[0]["state"] == "published", second.log_text()
    jobs = emulator.jobs()
    assert len(jobs) == 1 and jobs[0]["tag"] == rows[0]["asset_id"], "exactly one job for the file"
    assert emulator.stats()["storage_objects"] == 1, "the file must not be uploaded twice"
    assert second.stop() == 0


def test_files_present_before_start_and_dropped_while_stopped_are_processed_once(tmp_path, emulator, daemon_factory):
    watch = tmp_path / "watch"
    (watch / "day1").mkdir(parents=True)
    ledger = tmp_path / "ledger.sqlite3"
    config = write_config(tmp_path, emulator.base_url, [watch])
    shutil.copy(FIXTURES / "sample.png", watch / "day1" / "before.png")

    first = daemon_factory(config)
    wait_for(lambda: _all_final(ledger, 1), 60, "the file present at start")
    assert first.stop() == 0

    shutil.copy(FIXTURES / "sample.jpg", watch / "while-stopped.jpg")
    second = daemon_factory(config)
    rows = wait_for(lambda: _all_final(ledger, 2), 60, "the file dropped while stopped")
    assert {row["relpath"]: row["state"] for row in rows} == {"day1/before.png": "published", "while-stopped.jpg": "published"}
    assert second.stop() == 0
    assert emulator.stats()["jobs_created"] == 2, "the file published before the restart must not be submitted again"

    conn = sqlite3.connect(ledger)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
