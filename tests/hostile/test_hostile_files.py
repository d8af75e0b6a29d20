"""Hostile files in a watched folder, end to end: the real daemon, the emulator over HTTP, real files of every odd kind.

Nothing in the folder may block the daemon (a FIFO or a device opened for reading would), nothing may be followed out
of the folder by default, content decides the type whatever the name says, and every accepted file gets sidecars whose
names are right, however strange its own name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, IN_CI, free_port, held_to_file_modes, ledger_rows, wait_for, write_config
from tests.hostile.conftest import peak_rss_kib, rows_when_final

ODD_NAME = "line\nbreak \"double\" 'single' 🎬 ümlaut.jpg"
EMOJI_DIR = "📁" * 50  # 200 bytes of UTF-8: one path component well below NAME_MAX (255 bytes)
LONG_PATH_DIRS = [f"{EMOJI_DIR}{index}" for index in range(9)]  # nine components: about 1800 bytes of folders
LONG_NAME = "🎞" * 45 + ".jpg"  # 184 bytes: its sidecars' names (+ ".deepva.json") still fit in 255 bytes
TOO_LONG_NAME = "x" * 246 + ".jpg"  # 250 bytes: the file fits, "<name>.deepva.json" (262 bytes) cannot exist


@pytest.fixture
def deadline() -> Iterator[None]:
    """Whatever the daemon meets, the test itself must end: a hang is a failure, not a stuck CI job."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("the hostile-files test hung")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(150)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _device_node(path: Path) -> str | None:
    """A character device like /dev/null in the folder; None when made, else why not (only root may)."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        if IN_CI and os.geteuid() == 0:
            pytest.fail("CI runs as root and could not create a device node")
        return "not root" if os.geteuid() != 0 else "mknod not permitted"
    return None


def test_hostile_files_end_to_end(tmp_path, emulator, daemon_factory, deadline):
    watch = tmp_path / "watch"
    watch.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(FIXTURES / "sample.jpg", outside / "secret.jpg")

    (watch / "zero.jpg").write_bytes(b"")
    shutil.copy(FIXTURES / "truncated.mp4", watch / "truncated.mp4")
    shutil.copy(FIXTURES / "sample.png", watch / "picture.mov")  # a PNG named .mov: a PNG, by content
    shutil.copy(FIXTURES / "html-named.jpg", watch / "page.jpg")  # a web page named .jpg: never uploaded
    shutil.copy(FIXTURES / "sample.jpg", watch / ODD_NAME)
    long_folder = watch.joinpath(*LONG_PATH_DIRS)
    long_folder.mkdir(parents=True)
    shutil.copy(FIXTURES / "sample.jpg", long_folder / LONG_NAME)
    shutil.copy(FIXTURES / "sample.jpg", watch / TOO_LONG_NAME)
    deep_folder = watch.joinpath(*[f"d{index:02d}" for index in range(100)])
    deep_folder.mkdir(parents=True)
    shutil.copy(FIXTURES / "sample.jpg", deep_folder / "deep.jpg")
    shutil.copy(FIXTURES / "sample.jpg", watch / "hard-a.jpg")
    os.link(watch / "hard-a.jpg", watch / "hard-b.jpg")
    (watch / "loop").symlink_to(".")  # a folder link back to itself
    (watch / "ping.jpg").symlink_to("pong.jpg")
    (watch / "pong.jpg").symlink_to("ping.jpg")  # a file link loop
    (watch / "escape.jpg").symlink_to(outside / "secret.jpg")  # links are not followed by default
    (watch / "escape-dir").symlink_to(outside)
    os.mkfifo(watch / "fifo.mp4")
    no_device = _device_node(watch / "device.jpg")

    long_relpath = "/".join([*LONG_PATH_DIRS, LONG_NAME])
    assert len(long_relpath.encode()) >= 1900
    expected_published = {"truncated.mp4", "picture.mov", ODD_NAME, long_relpath,
                          "/".join([*(f"d{index:02d}" for index in range(100)), "deep.jpg"]), "hard-a.jpg", "hard-b.jpg"}
    expected_rejected = {"zero.jpg", "page.jpg"}

    # min_size 0: zero-byte files reach the sniffer and are rejected with a reason (the default, 1, skips them unseen)
    daemon = daemon_factory(write_config(tmp_path, emulator.base_url, [watch], folder={"min_size": 0}))
    rows = rows_when_final(tmp_path / "ledger.sqlite3", len(expected_published | expected_rejected) + 1, 120)
    assert daemon.process is not None and daemon.process.poll() is None
    log = daemon.log_text()
    assert daemon.stop() == 0, log[-3000:]

    by_path = {row["relpath"]: row for row in rows}
    assert set(by_path) == expected_published | expected_rejected | {TOO_LONG_NAME}, sorted(by_path)
    for relpath in expected_published:
        row = by_path[relpath]
        if relpath == "truncated.mp4" and row["state"] == "failed":  # DeepVA may refuse it: then it says why
            assert row["last_error"]
            continue
        assert row["state"] == "published", (relpath, row["state"], row["last_error"])
        media = watch / relpath
        json_path, xmp_path = Path(row["json_path"]), Path(row["xmp_path"])
        assert json_path == media.with_name(media.name + ".deepva.json") and json_path.is_file()
        expected_xmp = media.with_name(media.name + ".xmp") if row["kind"] == "image" else media.with_suffix(".xmp")
        assert xmp_path == expected_xmp and xmp_path.is_file(), (relpath, xmp_path)
    assert by_path["picture.mov"]["mime"] == "image/png"
    assert "empty" in by_path["zero.jpg"]["last_error"]
    assert "HTML" in by_path["page.jpg"]["last_error"] and by_path["page.jpg"]["state"] == "rejected"
    too_long = by_path[TOO_LONG_NAME]
    assert too_long["state"] == "failed" and "too long" in too_long["last_error"], too_long

    # each hard link is a file of its own, with its own job and sidecars
    assert by_path["hard-a.jpg"]["job_id"] != by_path["hard-b.jpg"]["job_id"]
    # only accepted files were uploaded: the web page, the zero-byte file and the links and pipes never left
    uploaded_tags = {job["tag"] for job in emulator.jobs()}
    assert by_path["page.jpg"]["asset_id"] not in uploaded_tags
    assert emulator.stats()["uploads_completed"] == len(expected_published) + 1  # + the name too long for sidecars
    assert not (outside / "secret.jpg.xmp").exists() and sorted(p.name for p in outside.iterdir()) == ["secret.jpg"]
    assert no_device is not None or stat.S_ISCHR(os.lstat(watch / "device.jpg").st_mode)
    assert not [name for name in os.listdir(watch) if ".tmp-" in name]
    if no_device:
        (pytest.fail if IN_CI else pytest.skip)(f"everything but the device node was checked; device node: {no_device}")


def test_unreadable_file_waits_with_a_reason_and_goes_once_readable(tmp_path, emulator, deadline):
    """A mode-000 file: as any other user it is unreadable already; root reads every file whatever its mode, so as root
    the daemon is started without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (a real permission check by the kernel, not
    a mock). The read fails, the file waits with the reason, and goes once it is readable."""
    watch = tmp_path / "watch"
    watch.mkdir()
    shutil.copy(FIXTURES / "sample.jpg", watch / "locked.jpg")
    os.chmod(watch / "locked.jpg", 0)
    config = write_config(tmp_path, emulator.base_url, [watch])
    env = {k: v for k, v in os.environ.items() if k != "DEEPVA_API_KEY"}
    with open(tmp_path / "daemon.log", "wb") as log_file:
        process = subprocess.Popen(held_to_file_modes([sys.executable, "-m", "deepva_watch", "run", "-c", str(config)]),
                                   stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        ledger = tmp_path / "ledger.sqlite3"
        row = wait_for(lambda: [r for r in ledger_rows(ledger) if r["last_error"]], 30, "the read to fail")[0]
        assert row["state"] == "settled" and "Permission denied" in row["last_error"], row
        assert row["attempts"] >= 1 and emulator.stats()["uploads_completed"] == 0
        os.chmod(watch / "locked.jpg", 0o644)
        wait_for(lambda: [r for r in ledger_rows(ledger) if r["state"] == "published"], 60, "publication")
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(30)


def test_file_replaced_during_upload_is_superseded_and_the_new_one_published(tmp_path, emulator, daemon_factory, deadline):
    watch = tmp_path / "watch"
    watch.mkdir()
    big = watch / "clip.mp4"
    with open(big, "wb") as handle:  # an MP4 head, then a sparse tail: 40 MB to upload at 40 Mbit/s takes ~8 s
        handle.write((FIXTURES / "sample.mp4").read_bytes())
        handle.truncate(40 * 1024 * 1024)
    daemon = daemon_factory(write_config(tmp_path, emulator.base_url, [watch], max_upload_mbps=40))
    ledger = tmp_path / "ledger.sqlite3"
    wait_for(lambda: [r for r in ledger_rows(ledger) if r["state"] == "uploading"], 30, "the upload to start")
    replacement = watch / ".incoming.mp4"
    shutil.copy(FIXTURES / "pal50.mp4", replacement)
    os.replace(replacement, big)  # what copy tools do: write aside, rename over
    new_size = big.stat().st_size

    rows = rows_when_final(ledger, 2, 90)
    log = daemon.log_text()
    assert daemon.stop() == 0
    old, new = sorted(rows, key=lambda row: row["id"])
    assert old["size"] == 40 * 1024 * 1024 and old["state"] == "superseded", (old["state"], old["last_error"], log[-2000:])
    assert new["size"] == new_size and new["state"] == "published", (new["state"], new["last_error"])
    import json

    sidecar = json.loads((watch / "clip.mp4.deepva.json").read_text())
    assert sidecar["asset"]["size"] == new_size and sidecar["asset"]["asset_id"] == new["asset_id"]
    assert sidecar["job"]["id"] == new["job_id"]


def _upload_sparse(tmp_path: Path, fake_deepva, daemon_factory, size: int) -> int:
    """Publish one sparse file of ``size`` bytes through a discarding server; returns the daemon's peak RSS in KiB."""
    watch = tmp_path / "watch"
    watch.mkdir()
    media = watch / "huge.mp4"
    with open(media, "wb") as handle:  # a real MP4 head (so sniffing accepts it), then a hole: no disk is used
        handle.write((FIXTURES / "sample.mp4").read_bytes())
        handle.truncate(size)
    daemon = daemon_factory(write_config(tmp_path, fake_deepva.base_url, [watch]))
    rows = rows_when_final(tmp_path / "ledger.sqlite3", 1, 600)
    assert daemon.process is not None
    peak = peak_rss_kib(daemon.process.pid)
    assert daemon.stop() == 0
    assert rows[0]["state"] == "published", rows[0]
    name, received = fake_deepva.uploads[0]
    assert name.endswith("huge.mp4") and received > size  # the whole file went out, in one multipart body
    return peak


def test_large_sparse_file_streams_with_bounded_memory(tmp_path, fake_deepva, daemon_factory):
    """1 GiB in the CI suite (a few seconds on loopback); the 20 GiB run is the slow test below."""
    peak = _upload_sparse(tmp_path, fake_deepva, daemon_factory, 1 << 30)
    assert peak < 200 * 1024, f"peak RSS {peak} KiB while uploading 1 GiB"


@pytest.mark.slow
def test_20_gib_sparse_file_streams_with_bounded_memory(tmp_path, fake_deepva, daemon_factory):
    """``truncate -s 20G``: about a minute on loopback, so outside the CI suite (``pytest -m slow tests/hostile``)."""
    peak = _upload_sparse(tmp_path, fake_deepva, daemon_factory, 20 << 30)
    assert peak < 200 * 1024, f"peak RSS {peak} KiB while uploading 20 GiB"


def test_symlink_loops_end_when_links_are_followed(tmp_path):
    """With follow_symlinks on, every folder is entered once per (device, inode): a loop ends, nothing hangs."""
    from deepva_watch.config import FolderConfig
    from deepva_watch.watch.discover import scan_tree

    watch = tmp_path / "watch"
    (watch / "a" / "b").mkdir(parents=True)
    shutil.copy(FIXTURES / "sample.jpg", watch / "a" / "b" / "one.jpg")
    (watch / "a" / "b" / "up").symlink_to("../..")
    (watch / "self").symlink_to(".")
    (watch / "ping.jpg").symlink_to("pong.jpg")
    (watch / "pong.jpg").symlink_to("ping.jpg")
    os.mkfifo(watch / "pipe.jpg")
    folder = FolderConfig(path=watch, modules={"m": {}}, follow_symlinks=True)
    assert sorted(scan_tree(folder).files) == ["a/b/one.jpg"]


def test_a_fifo_swapped_in_after_discovery_is_rejected_without_blocking(tmp_path):
    """A regular file is recorded, then replaced by a FIFO before it settles: settle and sniff look before they open,
    and open non-blocking, so the step returns at once with a reason."""
    import time

    from deepva_watch.config import Config, FolderConfig
    from deepva_watch.flow import Advance, Services
    from deepva_watch.ledger import SqliteLedger
    from deepva_watch.media.sniff import Unsupported, sniff
    from deepva_watch.stages.settle import settle

    watch = tmp_path / "watch"
    watch.mkdir()
    target = watch / "clip.mp4"
    target.write_bytes((FIXTURES / "sample.mp4").read_bytes())
    folder = FolderConfig(path=watch, modules={"m": {}}, settle_seconds=0)
    config = Config(folders=(folder,), ledger=tmp_path / "ledger.sqlite3")
    ledger = SqliteLedger(config.ledger)

    class Clock:
        def now(self) -> float:
            return time.time() + 60

    services = Services(config, ledger, client=None, clock=Clock())  # type: ignore[arg-type]  # settle calls no API
    info = target.stat()
    ledger.observe(str(watch.absolute()), "clip.mp4", info.st_size, info.st_mtime_ns, time.time())
    target.unlink()
    os.mkfifo(target)
    asset = ledger.versions(str(watch.absolute()), "clip.mp4")[-1]
    outcome = settle(services, asset)
    assert isinstance(outcome, Advance) and outcome.to == "rejected" and "regular" in outcome.changes["last_error"]
    verdict = sniff(target)
    assert isinstance(verdict, Unsupported) and "FIFO" in verdict.reason


def test_a_name_that_is_not_utf8_is_skipped_and_the_folder_goes_on(tmp_path, emulator, daemon_factory, deadline):
    """A Latin-1 name (``café.jpg`` from an old Mac tool) and a folder named so: each skipped with one warning and a
    metric; every other file of the folder is published."""
    watch = tmp_path / "watch"
    watch.mkdir()
    port = free_port()
    latin1_file = os.path.join(os.fsencode(watch), b"caf\xe9.jpg")
    latin1_folder = os.path.join(os.fsencode(watch), b"d\xe9p\xf4t")
    os.mkdir(latin1_folder)
    for target in (latin1_file, os.path.join(latin1_folder, b"inside.jpg")):
        shutil.copyfile(FIXTURES / "sample.jpg", target)
    shutil.copy(FIXTURES / "sample.jpg", watch / "before.jpg")
    config = write_config(tmp_path, emulator.base_url, [watch], metrics={"listen": f"127.0.0.1:{port}"})
    daemon = daemon_factory(config)
    rows_when_final(tmp_path / "ledger.sqlite3", 1)
    shutil.copy(FIXTURES / "sample.jpg", watch / "after.jpg")  # a later file of the same folder: events still work
    rows = rows_when_final(tmp_path / "ledger.sqlite3", 2)

    assert sorted((row["relpath"], row["state"]) for row in rows) == [("after.jpg", "published"),
                                                                      ("before.jpg", "published")]
    warnings = [line for line in daemon.log_text().splitlines() if '"event": "name_not_utf8"' in line]
    assert len(warnings) == 2, warnings
    assert any("caf\\\\xe9.jpg" in line for line in warnings) and any("d\\\\xe9p\\\\xf4t/" in line for line in warnings)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert f'deepva_watch_names_skipped{{folder="{watch}",node="{socket.gethostname()}"}} 2.0' in metrics
    assert daemon.stop() == 0
