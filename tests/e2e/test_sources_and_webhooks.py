"""Every way DeepVA can reach the file (upload, on-prem path, URL) and tell us it is done (poll, webhook)."""

from __future__ import annotations

import functools
import shutil
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, free_port, ledger_rows, wait_for, write_config

SECRET = "webhook-secret-3b9e11"


def _published(ledger: Path, expected: int) -> list[dict]:
    rows = ledger_rows(ledger)
    return rows if len(rows) == expected and all(row["state"] == "published" for row in rows) else []


def test_local_path_mode_sends_the_servers_view_of_the_path_and_uploads_nothing(tmp_path, make_emulator,
                                                                               daemon_factory):
    watch = tmp_path / "newsroom"
    (watch / "day 1").mkdir(parents=True)
    emulator = make_emulator(onprem_roots={"/mnt/deepva/newsroom": watch})
    config = write_config(tmp_path, emulator.base_url, [watch], folder={
        "source": "local_path",
        "path_map": [{"local": str(tmp_path), "remote": "/mnt/other"},
                     {"local": str(watch), "remote": "/mnt/deepva/newsroom"}],  # the longer prefix wins
    })
    daemon = daemon_factory(config)
    shutil.copy(FIXTURES / "sample.mp4", watch / "day 1" / "clip.mp4")
    (row,) = wait_for(lambda: _published(tmp_path / "ledger.sqlite3", 1), 60, "the on-prem file to be published")
    (job,) = emulator.jobs()
    assert job["sources"] == ["/mnt/deepva/newsroom/day 1/clip.mp4"]
    assert emulator.stats()["requests"].get("POST /api/v1/storage/", 0) == 0, "nothing may be uploaded"
    assert Path(row["xmp_path"]).exists()
    daemon.stop()


def test_an_unmapped_file_fails_with_a_clear_message_and_is_never_guessed(tmp_path, make_emulator, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    emulator = make_emulator(onprem_roots={"/mnt/x": tmp_path / "elsewhere"})
    config = write_config(tmp_path, emulator.base_url, [watch], folder={
        "source": "local_path", "path_map": [{"local": "/srv/unrelated", "remote": "/mnt/x"}],
    })
    daemon = daemon_factory(config)
    shutil.copy(FIXTURES / "sample.jpg", watch / "a.jpg")
    (row,) = wait_for(lambda: [r for r in ledger_rows(tmp_path / "ledger.sqlite3") if r["state"] == "failed"], 60,
                      "the unmapped file to fail")
    assert "/srv/unrelated" in row["last_error"] and "a.jpg" in row["last_error"]
    assert emulator.stats()["jobs_created"] == 0
    daemon.stop()


@pytest.fixture
def media_server(tmp_path):
    """The watched folder published over HTTP on loopback, as a site's own media server would."""
    root = tmp_path / "watch"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass


def test_url_mode_builds_percent_encoded_urls_that_the_server_can_fetch(tmp_path, make_emulator, daemon_factory,
                                                                        media_server):
    watch, prefix = media_server
    emulator = make_emulator()
    config = write_config(tmp_path, emulator.base_url, [watch], folder={"source": "url", "url_prefix": prefix})
    daemon = daemon_factory(config)
    (watch / "Straße #1").mkdir()
    shutil.copy(FIXTURES / "sample.png", watch / "Straße #1" / "50% off?.png")
    (row,) = wait_for(lambda: _published(tmp_path / "ledger.sqlite3", 1), 60, "the URL-sourced file to be published")
    (job,) = emulator.jobs()
    assert job["sources"] == [prefix + "Stra%C3%9Fe%20%231/50%25%20off%3F.png"]
    assert job["state"] == "completed", "the emulator fetched the encoded URL from our media server"
    assert emulator.stats()["requests"].get("POST /api/v1/storage/", 0) == 0
    daemon.stop()


def _webhook_config(tmp_path, emulator, watch, *, callback_port: int | None = None):
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text(SECRET)
    port = free_port()
    return write_config(
        tmp_path, emulator.base_url, [watch],
        poll_interval_seconds=2.0,  # with a receiver, polls are six times rarer: the first comes after about 12 s
        webhook={"listen": f"127.0.0.1:{port}", "secret_file": str(secret_file),
                 "callback_url": f"http://127.0.0.1:{callback_port or port}/hook"},
    )


def test_a_webhook_completes_the_job_well_before_the_next_poll(tmp_path, make_emulator, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    emulator = make_emulator(processing_time=0.5, webhook_secret=SECRET)
    daemon = daemon_factory(_webhook_config(tmp_path, emulator, watch))
    shutil.copy(FIXTURES / "sample.jpg", watch / "a.jpg")
    started = time.monotonic()
    wait_for(lambda: _published(tmp_path / "ledger.sqlite3", 1), 30, "the webhook to complete the job")
    elapsed = time.monotonic() - started
    assert elapsed < 8, f"took {elapsed:.1f} s: the webhook did not cut the wait short"
    stats = emulator.stats()
    assert stats["webhooks_delivered"] >= 1
    assert stats["requests"].get("GET /api/v1/jobs/{id}/", 0) <= 1, "one look after the webhook, no polling"
    daemon.stop()


def test_with_the_receiver_unreachable_polling_still_finishes_the_job(tmp_path, make_emulator, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    emulator = make_emulator(processing_time=0.3, webhook_secret=SECRET)
    daemon = daemon_factory(_webhook_config(tmp_path, emulator, watch, callback_port=free_port()))
    shutil.copy(FIXTURES / "sample.jpg", watch / "a.jpg")
    wait_for(lambda: _published(tmp_path / "ledger.sqlite3", 1), 60, "polling to finish the job")
    assert emulator.stats()["webhooks_failed"] >= 1
    daemon.stop()
