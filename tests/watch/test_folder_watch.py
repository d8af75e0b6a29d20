"""FolderWatch end to end on real folders: events, polling, overflows, the watch limit and shares that drop."""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from watchdog.events import EventsLostEvent

from deepva_watch.flow import folder_key
from deepva_watch.states import State
from deepva_watch.service.health import Health
from deepva_watch.watch import supervisor
from deepva_watch.watch.limits import WATCH_LIMIT_SYSCTL
from deepva_watch.watch.observer import start_observer
from deepva_watch.watch.supervisor import EMPTY_GUARD_FILES
from tests.conftest import require_root
from tests.watch.conftest import eventually

GONE, PUBLISHED, SETTLING = State.GONE, State.PUBLISHED, State.SETTLING
BOTH_MODES = pytest.mark.parametrize("mode", ["events", "poll"])


@BOTH_MODES
def test_new_files_rename_into_place_moves_in_and_deletions(harness, tmp_path, mode):
    watch = harness.start(harness.folder(watch=mode))
    assert watch.status().mode == mode
    (harness.root / "a.jpg").write_bytes(b"a")
    part = harness.root / "clip.mxf.part"
    part.write_bytes(b"partial")
    part.rename(harness.root / "clip.mxf")
    elsewhere = tmp_path / "elsewhere.mov"
    elsewhere.write_bytes(b"m")
    elsewhere.rename(harness.root / "moved-in.mov")
    (harness.root / "late" / "deep").mkdir(parents=True)
    (harness.root / "late" / "deep" / "d.png").write_bytes(b"d")
    expected = {"a.jpg": [SETTLING], "clip.mxf": [SETTLING], "moved-in.mov": [SETTLING], "late/deep/d.png": [SETTLING]}
    eventually(lambda: harness.rows() == expected, what=f"every arrival recorded once: {harness.rows()}")

    (harness.root / "a.jpg").unlink()
    (harness.root / "clip.mxf").rename(tmp_path / "moved-out.mxf")
    eventually(lambda: harness.rows()["a.jpg"] == [GONE] and harness.rows()["clip.mxf"] == [GONE], what="deletions")
    watch.request_rescan("test")
    eventually(lambda: watch.status().scans >= 2, what="a rescan")
    assert harness.rows() == {**expected, "a.jpg": [GONE], "clip.mxf": [GONE]}, "taken exactly once, gone quietly"


def test_polling_finds_changes_made_behind_its_back(harness):
    watch = harness.start(harness.folder(watch="poll"))
    target = harness.root / "clip.mov"
    target.write_bytes(b"v1")
    eventually(lambda: "clip.mov" in harness.rows(), what="the new file")
    row = harness.ledger.versions(folder_key(watch.folder), "clip.mov")[0]
    harness.ledger.transition(row, SETTLING, PUBLISHED, 1.0)
    info = target.stat()
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns + 5 * 10**9))  # same size, only the mtime moved
    eventually(lambda: harness.rows()["clip.mov"] == [PUBLISHED, SETTLING], what="the changed file as a new version")


class DeafObserver:
    """An observer that starts and delivers nothing, as the kernel does after dropping events (or a broken library)."""

    def __init__(self, handler):
        self.handler = handler

    def stop(self):
        pass

    def join(self, timeout=None):
        pass


def test_an_overflow_leads_to_a_rescan_that_finds_every_file(harness):
    """Events dropped by the kernel are gone for good; only the rescan that the overflow triggers can find them."""
    observers = []

    def deaf(path, handler, **kwargs):
        observers.append(DeafObserver(handler))
        return observers[-1]

    watch = harness.start(harness.folder(watch="events", rescan_interval_seconds=3600), observer_factory=deaf)
    for index in range(500):
        (harness.root / f"burst{index:03}.jpg").write_bytes(b"x")
    threading.Event().wait(1.5)
    assert harness.rows() == {}, "without events and before the next periodic rescan nothing can be seen"
    observers[0].handler.dispatch(EventsLostEvent(str(harness.root), is_directory=True))  # what watchdog sends
    eventually(lambda: len(harness.rows()) == 500, what="every file found by the rescan")
    assert watch.status().overflows == 1
    assert watch.status().events_missed == 0, "a reported overflow is not deafness"


def test_a_real_kernel_overflow_is_reported_and_events_keep_arriving(harness):
    """The kernel's own overflow: a new inotify instance made with a queue of 16 events, flooded."""
    require_root("lowering fs.inotify.max_queued_events needs root")
    queued = Path("/proc/sys/fs/inotify/max_queued_events")
    original = queued.read_text()
    queued.write_text("16\n")
    try:
        watch = harness.start(harness.folder(watch="events", rescan_interval_seconds=3600))  # watches up, scanned
    finally:
        queued.write_text(original)
    for index in range(400):
        (harness.root / f"flood{index:03}.jpg").write_bytes(b"x")
    eventually(lambda: watch.status().overflows >= 1, what="the overflow reported by watchdog")
    eventually(lambda: len(harness.rows()) == 400, what="every file of the flood, found by the rescan")
    (harness.root / "after.jpg").write_bytes(b"x")
    eventually(lambda: "after.jpg" in harness.rows(), what="events still flowing after the overflow")
    assert watch.status().mode == "events"


def test_events_that_go_deaf_are_caught_by_the_reconcile_and_the_folder_is_polled(harness, monkeypatch):
    monkeypatch.setattr(supervisor, "MISSED_EVENT_GRACE_SECONDS", 0.3)
    with capture_logs() as logs:
        watch = harness.start(harness.folder(watch="events", rescan_interval_seconds=1.5),
                              observer_factory=lambda path, handler, **kwargs: DeafObserver(handler))
        (harness.root / "unannounced.jpg").write_bytes(b"x")
        eventually(lambda: watch.status().mode == "poll", what="the switch to polling")
    assert harness.rows() == {"unannounced.jpg": [SETTLING]}
    error = next(entry for entry in logs if entry["event"] == "events_missed")
    assert error["log_level"] == "error" and error["files"] == 1 and error["examples"] == ["unannounced.jpg"]
    status = watch.status()
    assert status.events_missed == 1 and "events stopped arriving" in status.warning
    health = Health(api_failure_seconds=60, folder_statuses=lambda: [watch.status()], ledger_problem=lambda: None)
    report = health.check()
    assert report.healthy and report.status == "degraded" and "events stopped arriving" in report.warnings[0]
    (harness.root / "polled.jpg").write_bytes(b"x")
    eventually(lambda: "polled.jpg" in harness.rows(), what="the next file found by polling")


def test_a_startup_reconcile_never_counts_as_missed_events(harness, monkeypatch):
    monkeypatch.setattr(supervisor, "MISSED_EVENT_GRACE_SECONDS", 0.0)
    (harness.root / "before-start.jpg").write_bytes(b"x")
    threading.Event().wait(0.1)
    watch = harness.start(harness.folder(watch="events", rescan_interval_seconds=3600))
    assert harness.rows() == {"before-start.jpg": [SETTLING]}
    assert watch.status().events_missed == 0 and watch.status().mode == "events"


def test_the_inotify_watch_limit_falls_back_to_polling_with_a_warning(harness):
    def exhausted(*args, **kwargs):
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    with capture_logs() as logs:
        watch = harness.start(harness.folder(watch="events"), observer_factory=exhausted)
        eventually(lambda: watch.status().mode == "poll", what="the switch to polling")
    warning = next(entry for entry in logs if entry["event"] == "inotify_watch_limit")
    assert WATCH_LIMIT_SYSCTL in warning["note"]
    (harness.root / "polled.jpg").write_bytes(b"x")
    eventually(lambda: "polled.jpg" in harness.rows(), what="the file found by polling")


def test_a_tree_bigger_than_the_watches_left_is_polled_from_the_start(harness, tmp_path):
    for index in range(6):
        (harness.root / f"day-{index}").mkdir()
    limit = tmp_path / "max_user_watches"
    limit.write_text("5\n")
    started = []

    def counting(*args, **kwargs):
        started.append(args)
        return start_observer(*args, **kwargs)

    with capture_logs() as logs:
        watch = harness.start(harness.folder(watch="events"), observer_factory=counting, watch_limit_file=limit)
        eventually(lambda: watch.status().mode == "poll", what="the switch to polling")
    assert started == [], "no observer is started for a tree that cannot be watched whole"
    warning = next(entry for entry in logs if entry["event"] == "inotify_watch_limit")
    assert "7 folder(s) to watch" in warning["detail"] and WATCH_LIMIT_SYSCTL in warning["note"]
    (harness.root / "day-3" / "x.jpg").write_bytes(b"x")
    eventually(lambda: "day-3/x.jpg" in harness.rows(), what="the file in a sub-folder, found by polling")


def _files(harness, count):
    for index in range(count):
        (harness.root / f"f{index:02}.jpg").write_bytes(b"x")


@BOTH_MODES
def test_root_moved_away_and_back_pauses_and_resumes_without_gone_or_new_versions(harness, tmp_path, mode):
    _files(harness, 5)
    watch = harness.start(harness.folder(watch=mode))
    before = harness.rows()
    assert len(before) == 5
    away = tmp_path / "away"
    with capture_logs() as logs:
        harness.root.rename(away)
        eventually(lambda: watch.status().paused, what="the pause")
        (away / "f00.jpg").unlink()  # events from the moved tree must not count for the watched path
        threading.Event().wait(1.0)
        assert harness.rows() == before, "nothing may be marked gone while the folder is away"
        away.rename(harness.root)
        eventually(lambda: not watch.status().paused, what="the resume")
        eventually(lambda: watch.status().last_scan_at and "folder back" in str(logs), what="the reconcile")
    events = [entry["event"] for entry in logs]
    assert "folder_paused" in events and "folder_resumed" in events
    paused = next(entry for entry in logs if entry["event"] == "folder_paused")
    assert paused["log_level"] == "error" and "not reachable" in paused["reason"]
    eventually(lambda: harness.rows()["f00.jpg"] == [GONE], what="the file really deleted meanwhile, after the resume")
    assert {k: v for k, v in harness.rows().items() if k != "f00.jpg"} == {k: v for k, v in before.items() if k != "f00.jpg"}
    (harness.root / "new.jpg").write_bytes(b"x")
    eventually(lambda: "new.jpg" in harness.rows(), what="watching again after the resume")


def test_a_paused_folder_is_looked_at_once_a_second_not_in_a_busy_loop(harness, tmp_path, monkeypatch):
    """A poll (or a periodic rescan) falls due while the share is away; it must wait for the share, not spin."""
    from deepva_watch.watch import supervisor

    looks: list[float] = []
    real_root_problem = supervisor.root_problem

    def counted(folder):
        looks.append(time.monotonic())
        return real_root_problem(folder)

    monkeypatch.setattr(supervisor, "root_problem", counted)
    watch = harness.start(harness.folder(watch="poll", poll_interval_seconds=0.2))
    harness.root.rename(tmp_path / "away")
    eventually(lambda: watch.status().paused, what="the pause")
    threading.Event().wait(0.5)  # the next poll is now overdue
    looks.clear()
    threading.Event().wait(2.0)
    assert len(looks) <= 4, f"{len(looks)} looks at a missing folder in 2 s"


@BOTH_MODES
def test_a_missing_anchor_file_pauses(harness, mode):
    (harness.root / ".mounted").write_text("")
    _files(harness, 3)
    watch = harness.start(harness.folder(watch=mode, anchor_file=".mounted"))
    (harness.root / ".mounted").unlink()
    eventually(lambda: watch.status().paused, what="the pause")
    assert "anchor" in watch.status().reason
    (harness.root / "f00.jpg").unlink()
    threading.Event().wait(1.0)
    assert harness.rows()["f00.jpg"] == [SETTLING], "a paused folder marks nothing gone"
    (harness.root / ".mounted").write_text("")
    eventually(lambda: not watch.status().paused, what="the resume")
    eventually(lambda: harness.rows()["f00.jpg"] == [GONE], what="the reconcile after the resume")


def test_a_folder_that_turns_empty_while_many_files_are_known_pauses(harness, tmp_path):
    _files(harness, EMPTY_GUARD_FILES + 2)
    watch = harness.start(harness.folder(watch="poll"))
    stash = tmp_path / "stash"
    stash.mkdir()
    for path in list(harness.root.iterdir()):  # what an unmounted share looks like: the empty mount point
        shutil.move(str(path), stash / path.name)
    eventually(lambda: watch.status().paused, what="the pause")
    assert "suddenly empty" in watch.status().reason
    assert all(states == [SETTLING] for states in harness.rows().values())
    for path in list(stash.iterdir()):
        shutil.move(str(path), harness.root / path.name)
    eventually(lambda: not watch.status().paused, what="the resume")
    eventually(lambda: watch.status().scans >= 2, what="the reconcile")
    assert all(states == [SETTLING] for states in harness.rows().values()), "back, and nothing new or gone"


@BOTH_MODES
def test_a_fifo_in_the_folder_blocks_nothing(harness, mode):
    os.mkfifo(harness.root / "pipe.mxf")
    watch = harness.start(harness.folder(watch=mode))
    os.mkfifo(harness.root / "pipe2.mov")
    (harness.root / "real.jpg").write_bytes(b"x")
    eventually(lambda: "real.jpg" in harness.rows(), what="the real file, past the FIFOs")
    watch.request_rescan("test")
    eventually(lambda: watch.status().scans >= 2, what="a full rescan past the FIFOs")
    assert set(harness.rows()) == {"real.jpg"}
