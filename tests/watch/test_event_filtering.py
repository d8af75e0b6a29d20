"""The event handler drops what cannot matter before it wakes anyone: publishing raises several events per file."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
from watchdog.events import FileClosedEvent, FileCreatedEvent, FileDeletedEvent, FileMovedEvent

from deepva_watch.watch.discover import never_recorded
from deepva_watch.fsutil import atomic_write
from deepva_watch.watch.events import EVENT_FILTER, Hint, HintQueue
from deepva_watch.watch.observer import start_observer


def _queue() -> tuple[HintQueue, threading.Event]:
    wake = threading.Event()
    return HintQueue(wake, ignore=never_recorded), wake


def test_our_sidecar_writes_raise_no_hints_and_wake_nobody() -> None:
    hints, wake = _queue()
    temp = "/share/.clip.mp4.xmp.tmp-0123456789ab"
    hints.on_any_event(FileCreatedEvent(temp))
    hints.on_any_event(FileClosedEvent(temp))
    hints.on_any_event(FileMovedEvent(temp, "/share/clip.mp4.xmp"))
    hints.on_any_event(FileClosedEvent("/share/clip.mp4.deepva.json"))
    hints.on_any_event(FileDeletedEvent("/share/.DS_Store"))
    assert hints.drain() == []
    assert not wake.is_set()


def test_media_events_become_hints_and_wake_the_worker() -> None:
    hints, wake = _queue()
    hints.on_any_event(FileClosedEvent("/share/a.jpg"))
    hints.on_any_event(FileMovedEvent("/share/.a.mov.part", "/share/a.mov"))  # a copy tool's rename into place
    hints.on_any_event(FileMovedEvent("/share/b.mxf", "/share/archive/b.mxf"))
    hints.on_any_event(FileDeletedEvent("/share/c.png"))
    assert wake.is_set()
    assert hints.drain() == [
        Hint("seen", "/share/a.jpg"),
        Hint("seen", "/share/a.mov"),
        Hint("left", "/share/b.mxf"),
        Hint("seen", "/share/archive/b.mxf"),
        Hint("left", "/share/c.png"),
    ]


def test_a_media_file_renamed_to_a_hidden_name_has_left() -> None:
    hints, _ = _queue()
    hints.on_any_event(FileMovedEvent("/share/d.jpg", "/share/.d.jpg"))
    assert hints.drain() == [Hint("left", "/share/d.jpg")]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux only")
def test_the_inotify_reader_drops_our_own_writes_and_keeps_a_rename_into_place(tmp_path: Path) -> None:
    """Real inotify on a real folder: a sidecar written the way we write one raises no hint and wakes nobody; a copy
    tool's hidden temporary renamed to a media name still arrives (as a move to the media name)."""
    wake = threading.Event()
    hints = HintQueue(wake, ignore=never_recorded)
    observer = start_observer(str(tmp_path), hints, recursive=True, follow_symlinks=False, event_filter=EVENT_FILTER)
    try:
        atomic_write(tmp_path / "clip.mp4.xmp", lambda stream: stream.write(b"<x/>"))
        time.sleep(0.3)  # any event for the sidecar would have been dispatched by now
        assert hints.drain() == [] and not wake.is_set()
        hidden = tmp_path / ".clip.mov.Xy12Ab"
        hidden.write_bytes(b"media")
        hidden.rename(tmp_path / "clip.mov")
        assert wake.wait(5), "the rename into place was not reported"
        deadline = time.monotonic() + 5
        seen: list[Hint] = []
        while Hint("seen", str(tmp_path / "clip.mov")) not in seen and time.monotonic() < deadline:
            seen += hints.drain()
            time.sleep(0.02)
        assert Hint("seen", str(tmp_path / "clip.mov")) in seen
        assert all(not Path(hint.path).name.startswith(".") for hint in seen)
    finally:
        observer.stop()
        observer.join()
