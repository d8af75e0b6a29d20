"""The compact form of a scan (per folder: names in one string, sizes and mtimes in arrays) and what it finds changed,
on small real trees: between two scans, and against the ledger read page by page and written chunk by chunk."""

from __future__ import annotations

import os
import shutil

import pytest

from deepva_watch.flow import folder_key
from deepva_watch.states import State
from deepva_watch.watch import discover
from deepva_watch.watch.discover import Poll, reconcile, scan_tree
from deepva_watch.watch.snapshot import by_folder, changes

GONE, PUBLISHED, SETTLING, SKIPPED = State.GONE, State.PUBLISHED, State.SETTLING, State.SKIPPED


def _write(root, relpath, data=b"x"):
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _shift_mtime(path, seconds=5):
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + seconds * 10**9))


def _changes(before, after):
    changed, missing = set(), set()
    for folder_changed, folder_missing in changes(before, after):
        changed.update(sighting.relpath for sighting in folder_changed)
        missing.update(folder_missing)
    return changed, missing


def test_two_scans_of_a_real_tree_differ_exactly_where_the_tree_did(harness):
    root = harness.root
    for relpath in ("top.jpg", "day1/a.jpg", "day1/b.jpg", "day1/c.jpg", "day1/sub/deep.jpg", "day2/only.jpg",
                    "day3/old-name.jpg", "still/same.jpg"):
        _write(root, relpath)
    folder = harness.folder()
    before = scan_tree(folder).snapshot
    assert len(before) == 8 and set(before.listings) == {"", "day1/", "day1/sub/", "day2/", "day3/", "still/"}

    _write(root, "added.jpg")                                # a file added to a folder
    (root / "day1" / "a.jpg").write_bytes(b"longer")         # size changed
    _shift_mtime(root / "day1" / "b.jpg")                    # only the mtime changed: day1 keeps its names and count
    (root / "day3" / "old-name.jpg").rename(root / "day3" / "new-name.jpg")  # same count, another name
    (root / "day2" / "only.jpg").unlink()                    # a folder's last file removed
    shutil.rmtree(root / "day1" / "sub")                     # a folder removed
    _write(root, "day4/new.jpg")                             # a folder added
    after = scan_tree(folder).snapshot

    assert _changes(before, after) == (
        {"added.jpg", "day1/a.jpg", "day1/b.jpg", "day3/new-name.jpg", "day4/new.jpg"},
        {"day3/old-name.jpg", "day2/only.jpg", "day1/sub/deep.jpg"},
    )
    assert before.listings["still/"] == after.listings["still/"], "an unchanged folder compares equal as a whole"
    assert _changes(after, scan_tree(folder).snapshot) == (set(), set()), "an unchanged tree: no change at all"
    assert dict(after.items()) == scan_tree(folder).files
    assert scan_tree(folder).files["day1/a.jpg"][0] == len(b"longer")


def test_a_changed_mtime_alone_is_seen_in_a_folder_of_the_same_size(harness):
    """Same names, same sizes, same count: only one array differs, and only that file is reported."""
    for index in range(50):
        _write(harness.root, f"day/f{index:02}.jpg", b"x" * 10)
    folder = harness.folder()
    before = scan_tree(folder).snapshot
    _shift_mtime(harness.root / "day" / "f17.jpg", seconds=-60)
    after = scan_tree(folder).snapshot
    assert before.listings["day/"].names == after.listings["day/"].names
    assert before.listings["day/"].sizes == after.listings["day/"].sizes
    assert _changes(before, after) == ({"day/f17.jpg"}, set())


def test_rows_in_path_order_are_regrouped_by_folder_once_each():
    """A folder's files are interleaved with its sub-folders' in path order; each folder still comes out once."""
    paths = sorted(["a.jpg", "a/x", "a/b/y", "a/z", "a-b/c", "a/b/c/d", "a/b/e", "b/x", "z.jpg", "a0/q"])
    rows = [(path, 1, 1, "settling") for path in paths]
    grouped = list(by_folder(rows))
    prefixes = [prefix for prefix, _ in grouped]
    assert len(prefixes) == len(set(prefixes))
    assert {prefix: sorted(names) for prefix, names in grouped} == {
        "": ["a.jpg", "z.jpg"], "a/": ["x", "z"], "a/b/": ["e", "y"], "a/b/c/": ["d"], "a-b/": ["c"], "a0/": ["q"],
        "b/": ["x"]}


@pytest.fixture
def small_chunks(monkeypatch):
    """Pages and chunks of 7, so that a tree of a few dozen files crosses many of both."""
    monkeypatch.setattr(discover, "CHUNK", 7)


def test_a_reconcile_in_pages_and_chunks_records_what_changed_and_marks_gone(harness, small_chunks):
    root = harness.root
    for day in range(3):
        for index in range(10):
            _write(root, f"day{day}/f{index}.jpg")
    _write(root, "day1/sub/deep.jpg")
    folder = harness.folder()
    assert reconcile(harness.ledger, folder, 1.0) == (31, 0)
    assert reconcile(harness.ledger, folder, 2.0) == (31, 0)
    assert all(states == [SETTLING] for states in harness.rows().values()) and len(harness.rows()) == 31

    (published,) = harness.ledger.versions(folder_key(folder), "day0/f3.jpg")
    harness.ledger.transition(published, SETTLING, PUBLISHED, 2.5)
    (root / "day0" / "f3.jpg").write_bytes(b"changed")
    shutil.rmtree(root / "day2")
    _write(root, "day1/sub/deeper.jpg")
    _write(root, "day9/late.jpg")
    assert reconcile(harness.ledger, folder, 3.0) == (23, 10)
    rows = harness.rows()
    assert rows["day0/f3.jpg"] == [PUBLISHED, SETTLING]
    assert all(rows[f"day2/f{index}.jpg"] == [GONE] for index in range(10))
    assert rows["day1/sub/deeper.jpg"] == [SETTLING] and rows["day9/late.jpg"] == [SETTLING]
    assert len(rows) == 33


def test_a_first_scan_in_chunks_skips_everything_and_a_scan_cut_short_is_a_first_scan_again(harness, small_chunks,
                                                                                           monkeypatch):
    for day in range(4):
        for index in range(10):
            _write(harness.root, f"day{day}/f{index}.jpg")
    folder = harness.folder(existing="skip")
    key = folder_key(folder)
    real = harness.ledger.observe_new_paths
    calls = []

    def dies_on_the_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(harness.ledger, "observe_new_paths", dies_on_the_third_chunk)
    with pytest.raises(RuntimeError):
        reconcile(harness.ledger, folder, 1.0)
    assert harness.ledger.folder_first_seen(key) is None, "a scan cut short leaves the folder unseen"
    assert 0 < len(harness.rows()) < 40 and all(states == [SKIPPED] for states in harness.rows().values())

    monkeypatch.setattr(harness.ledger, "observe_new_paths", real)
    assert reconcile(harness.ledger, folder, 2.0) == (40, 0)
    assert harness.ledger.folder_first_seen(key) == 2.0
    rows = harness.rows()
    assert len(rows) == 40 and all(states == [SKIPPED] for states in rows.values())
    _write(harness.root, "day0/arrived.jpg")
    reconcile(harness.ledger, folder, 3.0)
    assert harness.rows()["day0/arrived.jpg"] == [SETTLING], "after the first scan, a new file is processed"


def test_a_poll_records_new_files_while_it_walks_and_marks_gone_only_when_told_the_walk_is_sound(harness):
    """So that a new file is recorded within one poll cycle wherever it is, and a share that drops during the walk
    (the caller checks before finish) never makes a file look deleted."""
    for relpath in ("a/old.jpg", "b/doomed.jpg", "c/kept.jpg"):
        _write(harness.root, relpath)
    folder = harness.folder()
    reconcile(harness.ledger, folder, 1.0)
    previous = scan_tree(folder).snapshot
    _write(harness.root, "a/new.jpg")
    (harness.root / "b" / "doomed.jpg").unlink()
    shutil.rmtree(harness.root / "c")
    told = []
    poll = Poll(harness.ledger, folder, previous, lambda: 2.0, on_new=lambda: told.append(1))
    current = scan_tree(folder, each_folder=poll.listed).snapshot
    assert harness.rows()["a/new.jpg"] == [SETTLING] and told == [1], "recorded during the walk, the stage woken"
    assert harness.rows()["b/doomed.jpg"] == [SETTLING] and harness.rows()["c/kept.jpg"] == [SETTLING]
    assert poll.finish(current) == (["a/new.jpg"], 2)
    assert harness.rows()["b/doomed.jpg"] == [GONE] and harness.rows()["c/kept.jpg"] == [GONE]


def test_a_poll_leaves_the_files_of_an_unreadable_folder_alone(harness, monkeypatch):
    _write(harness.root, "locked/in.jpg")
    _write(harness.root, "locked/deeper/in.jpg")
    _write(harness.root, "open/in.jpg")
    folder = harness.folder()
    reconcile(harness.ledger, folder, 1.0)
    previous = scan_tree(folder).snapshot
    real_scandir = os.scandir

    def refusing(path):  # what a folder without read permission does (root reads every folder, so it is faked)
        if str(path).endswith("/locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    poll = Poll(harness.ledger, folder, previous, lambda: 2.0)
    result = scan_tree(folder, each_folder=poll.listed)
    assert result.unreadable == ["locked"]
    assert poll.finish(result.snapshot, result.unreadable) == ([], 0)
    assert all(states == [SETTLING] for states in harness.rows().values()) and len(harness.rows()) == 3
    result.snapshot.keep_from(previous, ("locked/",))  # what the watch keeps for the next poll
    assert _changes(previous, result.snapshot) == (set(), set()) and len(result.snapshot) == 3
    assert reconcile(harness.ledger, folder, 3.0) == (1, 0), "nor does a reconcile with the ledger"
    assert all(states == [SETTLING] for states in harness.rows().values())
