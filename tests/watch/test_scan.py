"""The walk itself and its reconcile with the ledger: filters, links, special files, and what a rescan costs."""

from __future__ import annotations

import os
import sqlite3
import threading
import tracemalloc

from deepva_watch.flow import folder_key
from deepva_watch.states import State
from deepva_watch.watch.discover import reconcile, scan_tree

GONE, PUBLISHED, SETTLING = State.GONE, State.PUBLISHED, State.SETTLING


def test_filters_sizes_and_never_media_names(harness):
    root = harness.root
    (root / "sub").mkdir()
    for name, size in [("a.mxf", 10), ("b.MOV", 10), ("tiny.mp4", 0), ("huge.mp4", 5000), ("skip.tmp", 10),
                       ("x.mxf.part", 10), ("clip.xmp", 10), ("clip.mxf.deepva.json", 10), (".hidden.jpg", 10),
                       ("Thumbs.db", 10), ("sub/c.jpg", 10), ("sub/notes.txt", 10)]:
        (root / name).write_bytes(b"x" * size)
    folder = harness.folder(max_size=1000, exclude=["*.txt"])
    assert set(scan_tree(folder).files) == {"a.mxf", "b.MOV", "sub/c.jpg"}
    only_video = harness.folder(include=["*.mxf", "*.mov", "*.MOV"], recursive=False)
    assert set(scan_tree(only_video).files) == {"a.mxf", "b.MOV"}


def test_symlinks_are_not_followed_unless_asked_and_never_loop(harness, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "linked.jpg").write_bytes(b"x")
    (harness.root / "real.jpg").write_bytes(b"x")
    (harness.root / "to-outside").symlink_to(outside, target_is_directory=True)
    (harness.root / "file-link.jpg").symlink_to(outside / "linked.jpg")
    (harness.root / "loop").symlink_to(harness.root, target_is_directory=True)
    (outside / "back").symlink_to(harness.root, target_is_directory=True)
    assert set(scan_tree(harness.folder()).files) == {"real.jpg"}
    followed = set(scan_tree(harness.folder(follow_symlinks=True)).files)
    assert {"real.jpg", "file-link.jpg", "to-outside/linked.jpg"} <= followed
    assert len(followed) == 3, f"each file once, no path through a loop: {sorted(followed)}"


def test_a_fifo_and_a_device_are_never_opened(harness):
    os.mkfifo(harness.root / "pipe.mxf")
    (harness.root / "real.mxf").write_bytes(b"x")
    if os.geteuid() == 0:
        os.mknod(harness.root / "null.mov", 0o600 | 0o020000, os.makedev(1, 3))
    done = threading.Event()
    result = {}

    def walk():
        result["files"] = reconcile(harness.ledger, harness.folder(), 1.0)
        done.set()

    threading.Thread(target=walk, daemon=True).start()
    assert done.wait(10), "the scan blocked on a FIFO"
    assert set(harness.rows()) == {"real.mxf"}


def test_the_walk_holds_one_folder_entry_at_a_time(harness):
    """A share's top folder may hold hundreds of thousands of entries, most of them sidecars. Listed all at once they
    held about 0.9 KB each (4.4 MB for these 5,000), and a rescan in the middle of a 50,000-file backlog lifted the
    daemon's peak memory by more than 100 MB."""
    for index in range(5000):
        (harness.root / f"clip{index:04}.xmp").write_bytes(b"x")
    (harness.root / "a.jpg").write_bytes(b"x")
    tracemalloc.start()
    try:
        result = scan_tree(harness.folder())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert set(result.files) == {"a.jpg"} and result.root_entries == 5001
    assert peak < 200_000, f"the walk held {peak} bytes at its peak"


def test_a_rescan_of_an_unchanged_tree_writes_nothing(harness):
    for index in range(2000):
        (harness.root / f"f{index:04}.jpg").write_bytes(b"x")
    folder = harness.folder()
    reconcile(harness.ledger, folder, 1.0)
    observer = sqlite3.connect(harness.ledger.path)  # data_version moves when another connection commits
    before = observer.execute("PRAGMA data_version").fetchone()[0]
    assert reconcile(harness.ledger, folder, 2.0) == (2000, 0)
    assert observer.execute("PRAGMA data_version").fetchone()[0] == before, "an unchanged tree must cost no writes"
    observer.close()


def test_reconcile_marks_only_unsubmitted_vanished_files_gone(harness):
    folder = harness.folder()
    for name in ("keep.jpg", "waiting.jpg", "done.jpg"):
        (harness.root / name).write_bytes(b"x")
    reconcile(harness.ledger, folder, 1.0)
    done = harness.ledger.versions(folder_key(folder), "done.jpg")[0]
    harness.ledger.transition(done, SETTLING, PUBLISHED, 1.0)
    (harness.root / "waiting.jpg").unlink()
    (harness.root / "done.jpg").unlink()
    reconcile(harness.ledger, folder, 2.0)
    assert harness.rows() == {"keep.jpg": [SETTLING], "waiting.jpg": [GONE], "done.jpg": [PUBLISHED]}


def test_a_remount_that_shifts_mtimes_reidentifies_by_content(harness):
    folder = harness.folder()
    path = harness.root / "clip.mxf"
    path.write_bytes(os.urandom(4096))
    reconcile(harness.ledger, folder, 1.0)
    (row,) = harness.ledger.versions(folder_key(folder), "clip.mxf")
    from deepva_watch.media.fingerprint import fingerprint

    harness.ledger.transition(row, SETTLING, PUBLISHED, 1.0, content_hash=fingerprint(path))
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 3600 * 10**9))  # a server an hour off after remount
    reconcile(harness.ledger, folder, 2.0)
    assert harness.rows() == {"clip.mxf": [PUBLISHED]}, "the same file must not become a new version"
    path.write_bytes(os.urandom(4096))  # a real change of the same size
    reconcile(harness.ledger, folder, 3.0)
    assert harness.rows() == {"clip.mxf": [PUBLISHED, SETTLING]}
