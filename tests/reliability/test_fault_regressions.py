"""Faults the reliability runs once found, each pinned by the smallest test that shows it, so none comes back:

- a 503 on ``POST /jobs/`` (a proxy's, after DeepVA created the job) must not lead to a second job;
- a sidecar's temporary file left by a SIGKILL mid-write is removed by the next write;
- /healthz turns red as soon as DeepVA refuses the key, not only after ``api_failure_seconds``;
- a file that met the refused key resumes as soon as the key is fixed;
- retries while DeepVA is unreachable thin out as the outage lasts.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from deepva_watch.config import load_config
from deepva_watch.deepva import DeepVAClient, DeepVAError, RetryPolicy
from deepva_watch.fsutil import temp_name_for
from deepva_watch.flow import Retry, Services, Stage, services_only
from deepva_watch.flow.runner import StageRunner
from deepva_watch.ledger import SqliteLedger
from deepva_watch.states import State
from tests.conftest import API_KEY, FIXTURES, free_port, ledger_rows, wait_for, write_config


def _state(ledger: Path, relpath: str) -> str | None:
    return next((row["state"] for row in ledger_rows(ledger) if row["relpath"] == relpath), None)


def _healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def test_a_503_after_the_job_was_created_does_not_create_a_second_one(emulator, tmp_path):
    media = tmp_path / "frame.jpg"
    shutil.copy(FIXTURES / "sample.jpg", media)
    with DeepVAClient(emulator.base_url, API_KEY, retry=RetryPolicy(attempts=3, base_delay=0)) as client:
        stored = client.upload(media)
        emulator.set_faults(error_after_rate={"POST /api/v1/jobs/": 1.0}, error_statuses=[503])
        with pytest.raises(DeepVAError):
            client.create_job([stored.url], {"face_recognition": {}}, tag="asset-1")

    assert emulator.stats()["jobs_created"] == 1


def test_a_sidecar_temporary_file_left_by_a_crash_is_removed(emulator, tmp_path, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    shutil.copy(FIXTURES / "sample.jpg", watch / "clip.jpg")
    leftovers = [watch / temp_name_for("clip.jpg.deepva.json"), watch / temp_name_for("clip.jpg.xmp")]
    for leftover in leftovers:
        leftover.write_bytes(b'{"job": ')  # half a sidecar, as a kill during the write leaves it
    daemon_factory(write_config(tmp_path, emulator.base_url, [watch]))

    wait_for(lambda: _state(tmp_path / "ledger.sqlite3", "clip.jpg") == "published", 30, "clip.jpg published")
    time.sleep(1.0)
    assert [path.name for path in leftovers if path.exists()] == []


def test_health_is_red_as_soon_as_the_key_is_refused(emulator, tmp_path, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    port = free_port()
    daemon_factory(write_config(tmp_path, emulator.base_url, [watch], metrics={"listen": f"127.0.0.1:{port}"}))
    shutil.copy(FIXTURES / "sample.jpg", watch / "before.jpg")
    wait_for(lambda: _state(tmp_path / "ledger.sqlite3", "before.jpg") == "published", 30, "before.jpg published")
    assert _healthz(port) == 200

    emulator.rotate_key("a-key-the-daemon-does-not-have")
    shutil.copy(FIXTURES / "sample.png", watch / "after.png")
    wait_for(lambda: "api_paused" in (tmp_path / "daemon-0.log").read_text(), 20, "the API gate to close")
    wait_for(lambda: _healthz(port) == 503, 5, "/healthz to turn red")


def test_a_file_that_met_the_refused_key_resumes_as_soon_as_the_key_is_fixed(emulator, tmp_path, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    emulator.set_processing_time(3.0)
    config = write_config(tmp_path, emulator.base_url, [watch])
    daemon_factory(config)
    shutil.copy(FIXTURES / "sample.jpg", watch / "clip.jpg")
    ledger = tmp_path / "ledger.sqlite3"
    wait_for(lambda: _state(ledger, "clip.jpg") == "submitted", 30, "clip.jpg submitted")

    emulator.rotate_key("rotated-key-0123456789")  # the tracker meets the 401 while the job runs
    wait_for(lambda: "api_paused" in (tmp_path / "daemon-0.log").read_text(), 20, "the API gate to close")
    (tmp_path / "api-key").write_text("rotated-key-0123456789\n")
    wait_for(lambda: "api_resumed" in (tmp_path / "daemon-0.log").read_text(), 10, "the API gate to open")
    wait_for(lambda: _state(ledger, "clip.jpg") == "published", 15, "clip.jpg published soon after the fix")


def test_retries_during_an_outage_thin_out(tmp_path):
    watch = tmp_path / "watch"
    watch.mkdir()
    (watch / "clip.jpg").write_bytes(b"\xff\xd8\xff")
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9/api/v1", [watch]))
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    clock = _ManualClock(1_000_000.0)
    services = Services(config=config, ledger=ledger, client=None, clock=clock, rng=random.Random(0))  # type: ignore[arg-type]
    outage_began = clock.now()
    services.api_failing_for = lambda: clock.value - outage_began  # what the daemon's health tracker reports
    folder = str(watch.absolute())
    ledger.observe(folder, "clip.jpg", 3, 1, clock.now())
    down = Stage("down", (State.SETTLING,), lambda services, asset: Retry("no answer", counts=False), services_only)
    runner = StageRunner(down, services, stop=threading.Event(), on_commit=lambda state, due_at: None)

    delays = []
    for _ in range(8):
        runner.run_once()
        (updated,) = ledger.versions(folder, "clip.jpg")
        delays.append(updated.next_attempt_at - clock.now())
        clock.value = updated.next_attempt_at
    assert delays[-1] > 4 * max(delays[:2]), f"retry delays during an outage: {[round(d, 1) for d in delays]}"


class _ManualClock:
    def __init__(self, value: float) -> None:
        self.value = value

    def now(self) -> float:
        return self.value

