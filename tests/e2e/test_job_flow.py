"""Job flow end to end: limits hold as the emulator counts them, failures are recorded, results of any size land."""

from __future__ import annotations

import importlib
import json
import shutil
import threading
import time
from pathlib import Path

from deepva_watch.config import load_config
from deepva_watch.deepva import DeepVAClient
from deepva_watch.flow import Services
from deepva_watch.flow.runner import StageRunner
from deepva_watch.ledger import SqliteLedger
from deepva_watch.stages import STAGES
from deepva_watch.states import State
from deepva_watch.watch.discover import reconcile
from tests.conftest import API_KEY, FIXTURES, ledger_rows, wait_for, write_config


def _final(ledger: Path, expected: int) -> list[dict]:
    rows = ledger_rows(ledger)
    done = {"published", "rejected", "failed", "gone"}
    return rows if len(rows) == expected and all(row["state"] in done for row in rows) else []


def _drop_images(watch: Path, count: int, padding: int = 0) -> None:
    sample = (FIXTURES / "sample.jpg").read_bytes() + bytes(padding)  # bytes after the JPEG's end are ignored by readers
    for index in range(count):
        (watch / f"img{index:03d}.jpg").write_bytes(sample + index.to_bytes(4, "big"))  # distinct content


def test_upload_and_job_limits_hold_as_the_emulator_counts_them(tmp_path, make_emulator, daemon_factory):
    emulator = make_emulator(processing_time=0.6)
    watch = tmp_path / "watch"
    watch.mkdir()
    # 12 × 200 KB through a shared 8 Mbit/s cap: about 2.4 s of uploading, so the two slots are busy together
    config = write_config(tmp_path, emulator.base_url, [watch], max_uploads=2, max_active_jobs=3, max_upload_mbps=8)
    daemon = daemon_factory(config)
    _drop_images(watch, 12, padding=200_000)
    rows = wait_for(lambda: _final(tmp_path / "ledger.sqlite3", 12), 90, "12 files published")
    assert all(row["state"] == "published" for row in rows), daemon.log_text()[-3000:]
    stats = emulator.stats()
    assert stats["peak_concurrent_uploads"] == 2, "both upload slots used, never a third"
    assert stats["peak_active_jobs"] <= 3
    assert stats["jobs_created"] == 12
    daemon.stop()


def test_a_failed_job_is_recorded_with_its_errors_and_gets_a_failure_json_but_no_xmp(tmp_path, make_emulator,
                                                                                       daemon_factory):
    emulator = make_emulator(processing_time=0.2)
    emulator.set_faults(job_failure_rate=1.0, job_failure_errors=["model celebrities is not available"])
    watch = tmp_path / "watch"
    watch.mkdir()
    daemon = daemon_factory(write_config(tmp_path, emulator.base_url, [watch]))
    shutil.copy(FIXTURES / "sample.png", watch / "a.png")
    (row,) = wait_for(lambda: _final(tmp_path / "ledger.sqlite3", 1), 60, "the failed job to be recorded")
    assert row["state"] == "failed" and row["error_retryable"] == 0
    assert "model celebrities is not available" in row["last_error"]
    assert json.loads(row["job_errors"]) == ["model celebrities is not available"]
    sidecar = json.loads((watch / "a.png.deepva.json").read_text())
    assert sidecar["job"]["state"] == "failed"
    assert "model celebrities is not available" in json.dumps(sidecar["job"]["errors"])
    assert not list(watch.glob("*.xmp")), "no XMP for a failed job: it would read as 'nothing found'"
    assert emulator.stats()["jobs_created"] == 1, "a failed job is not retried by default"
    daemon.stop()


def test_paginated_detailed_results_are_all_written(tmp_path, emulator, monkeypatch):
    """Real client, real emulator, the publish stage reading results three segments a page."""
    publish_module = importlib.import_module("deepva_watch.stages.publish")
    monkeypatch.setattr(publish_module, "DETAILED_PAGE_SIZE", 3)
    emulator.set_processing_time(0)
    watch = tmp_path / "watch"
    watch.mkdir()
    shutil.copy(FIXTURES / "sample.mxf", watch / "clip.mxf")
    config = load_config(write_config(tmp_path, emulator.base_url, [watch], folder={"settle_seconds": 0}))
    client = DeepVAClient(emulator.base_url, API_KEY)
    services = Services(config, SqliteLedger(config.ledger), client, _Clock())
    runners = {stage.name: StageRunner(stage, services, threading.Event(), lambda state, due_at: None) for stage in STAGES}
    reconcile(services.ledger, config.folders[0], services.clock.now())
    for name in ("settle", "sniff", "upload", "submit", "track", "publish"):
        services.clock.skip(60)  # every step due at once; the emulator, on real time, finished the job already
        runners[name].run_once()
    (row,) = services.ledger.query()
    assert row.state == State.PUBLISHED, row.last_error
    total = len(list(client.iter_detailed_results(row.job_id, page_size=1000)))
    assert total > 6, "the fixture must give several pages at three segments a page"
    written = json.loads(Path(row.json_path).read_text())["detailed_results"]
    assert len(written) == total
    pages = emulator.stats()["requests"]["GET /api/v1/jobs/{id}/detailed-results/"]
    assert pages >= total // 3 + 1


class _Clock:
    """Real time plus whatever the test skips."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def skip(self, seconds: float) -> None:
        self.offset += seconds
