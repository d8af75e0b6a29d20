"""Sidecars never leave the tree they belong in, and no file planted at a sidecar's name can block or fool the writer.

Real folders, links and FIFOs: a folder swapped for a link to somewhere else, a FIFO, a link or a huge file where a
sidecar goes. Calls that could block run in a thread with a deadline; a reader stuck on a FIFO is released by opening
its other end, so that a failing test still ends.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import threading
import tracemalloc
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from deepva_watch.fsutil import (
    FileTooLarge,
    NotARegularFile,
    atomic_write_at,
    read_regular_at,
    temp_name_for,
)
from deepva_watch.log import REDACTED, register_secret
from deepva_watch.sidecars import SidecarSettings, UnsafeSidecarPath, WrittenSidecars, publish_failure, publish_results

T = TypeVar("T")
DEADLINE = 5.0

THEIR_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag>'
    b"<rdf:li>theirs</rdf:li></rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta>"
)


def snapshot(folder: Path) -> dict[str, tuple[int, int, bytes | None]]:
    """Every entry below ``folder``: inode, modification time and content (None for anything but a regular file)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        content = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
        found[str(path.relative_to(folder))] = (info.st_ino, info.st_mtime_ns, content)
    return found


def within_deadline(call: Callable[[], T], fifos: Iterable[Path] = ()) -> T:
    """``call()``, failing the test if it has not returned after DEADLINE seconds."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed to the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    if thread.is_alive():
        for fifo in fifos:
            release_reader(fifo)
        thread.join(DEADLINE)
        pytest.fail(f"still blocked after {DEADLINE} s")
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


def release_reader(fifo: Path) -> None:
    """A reader blocked opening ``fifo`` gets an end of file."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as error:
        if error.errno != errno.ENXIO:  # nobody is waiting
            raise


def assert_left_alone(fifo: Path, inode: int) -> None:
    info = fifo.lstat()
    assert stat.S_ISFIFO(info.st_mode) and info.st_ino == inode, "the FIFO was replaced"


@pytest.fixture
def results(make) -> Callable[..., WrittenSidecars]:
    """``results(media_path, root, settings=..., media=...)``: publish one face found in a media file."""

    def run(media_path: Path, root: Path, *, settings: SidecarSettings | None = None, media=None) -> WrittenSidecars:
        return publish_results(media_path, watch_root=root, settings=settings or SidecarSettings(), job=make.job(),
                               segments=iter([make.segment("Jane Doe", media_type="image")]),
                               media=media or make.IMAGE, provenance=make.provenance())

    return run


def failure(make, media_path: Path, root: Path, *, settings: SidecarSettings | None = None,
            errors: tuple[str, ...] = (), extra: Iterable[str] = ()) -> WrittenSidecars:
    return publish_failure(media_path, watch_root=root, settings=settings or SidecarSettings(),
                           job=make.job(state="failed", errors=errors), errors=list(extra), media=make.IMAGE,
                           provenance=make.provenance())


# A folder swapped for a link ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("relpath", "swapped"), [("sub/x.jpg", "sub"), ("sub/deeper/x.jpg", "sub"),
                                                  ("sub/deeper/x.jpg", "sub/deeper")])
@pytest.mark.parametrize("their_xmp_outside", [False, True], ids=["empty-outside", "xmp-outside"])
@pytest.mark.parametrize("call", ["results", "failure"])
def test_a_folder_swapped_for_a_link_is_refused_and_nothing_lands_outside(
    tmp_path: Path, watch_root: Path, make, results, relpath: str, swapped: str, their_xmp_outside: bool, call: str
) -> None:
    """``mv watch/sub watch/sub.real; ln -s …/outside watch/sub`` once the row is publishing: the link is named in
    the refusal, and the folder it points to is neither written nor read (an XMP there is not merged into)."""
    media_path = watch_root / relpath
    media_path.parent.mkdir(parents=True)
    media_path.write_bytes(b"media")
    outside = tmp_path / "outside"
    (outside / "deeper").mkdir(parents=True)
    if their_xmp_outside:
        for folder in (outside, outside / "deeper"):
            (folder / "x.jpg.xmp").write_bytes(THEIR_XMP)
    before = snapshot(outside)
    link = watch_root / swapped
    link.rename(link.with_name(link.name + ".real"))
    link.symlink_to(outside, target_is_directory=True)

    with pytest.raises(UnsafeSidecarPath, match=re.escape(f"{link}: it is a symbolic link")):
        if call == "results":
            results(media_path, watch_root)
        else:
            failure(make, media_path, watch_root, extra=["gave up"])

    assert snapshot(outside) == before
    moved = link.with_name(link.name + ".real")
    assert sorted(path.name for path in moved.rglob("*") if path.is_file()) == ["x.jpg"]


def test_a_mirrored_folder_that_is_a_link_is_refused(tmp_path: Path, watch_root: Path, make, results) -> None:
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.jpg.xmp").write_bytes(THEIR_XMP)
    before = snapshot(outside)
    (watch_root / "sub").mkdir()
    media_path = watch_root / "sub" / "x.jpg"
    media_path.write_bytes(b"media")
    out.mkdir()
    (out / "sub").symlink_to(outside, target_is_directory=True)
    settings = SidecarSettings(output_dir=out)

    with pytest.raises(UnsafeSidecarPath, match=re.escape(f"{out / 'sub'}: it is a symbolic link")):
        results(media_path, watch_root, settings=settings)
    with pytest.raises(UnsafeSidecarPath, match=re.escape(f"{out / 'sub'}: it is a symbolic link")):
        failure(make, media_path, watch_root, settings=settings)
    assert snapshot(outside) == before


def test_a_file_where_a_mirrored_folder_belongs_is_refused(tmp_path: Path, watch_root: Path, results) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_bytes(b"not a folder")
    (watch_root / "sub").mkdir()
    (watch_root / "sub" / "x.jpg").write_bytes(b"media")
    with pytest.raises(UnsafeSidecarPath, match="it is a regular file"):
        results(watch_root / "sub" / "x.jpg", watch_root, settings=SidecarSettings(output_dir=out))
    assert (out / "sub").read_bytes() == b"not a folder"


def test_configured_folders_that_are_links_are_followed(tmp_path: Path, results) -> None:
    """The watched folder and ``output_dir`` are the administrator's: a link there is set up, not planted."""
    (tmp_path / "real-watch" / "sub").mkdir(parents=True)
    (tmp_path / "real-out").mkdir()
    root = tmp_path / "watch-link"
    root.symlink_to(tmp_path / "real-watch", target_is_directory=True)
    out = tmp_path / "out-link"
    out.symlink_to(tmp_path / "real-out", target_is_directory=True)
    media_path = root / "sub" / "x.jpg"
    media_path.write_bytes(b"media")

    written = results(media_path, root)
    assert written.xmp == root / "sub" / "x.jpg.xmp" and written.json == root / "sub" / "x.jpg.deepva.json"
    assert (tmp_path / "real-watch" / "sub" / "x.jpg.xmp").is_file()

    mirrored = results(media_path, root, settings=SidecarSettings(output_dir=out))
    assert mirrored.xmp == out / "sub" / "x.jpg.xmp"
    assert sorted(path.name for path in (tmp_path / "real-out" / "sub").iterdir()) == ["x.jpg.deepva.json",
                                                                                      "x.jpg.xmp"]


def test_links_below_the_root_are_followed_where_the_folder_follows_them(tmp_path: Path, watch_root: Path,
                                                                      results) -> None:
    """``follow_symlinks: true`` watches a linked folder's files, so their sidecars go next to them; the
    ``output_dir`` tree is still walked without following a link."""
    linked = tmp_path / "linked"
    linked.mkdir()
    (watch_root / "sub").symlink_to(linked, target_is_directory=True)
    media_path = watch_root / "sub" / "x.jpg"
    media_path.write_bytes(b"media")

    written = results(media_path, watch_root, settings=SidecarSettings(follow_links=True))
    assert written.xmp == watch_root / "sub" / "x.jpg.xmp" and (linked / "x.jpg.xmp").is_file()

    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(UnsafeSidecarPath, match="it is a symbolic link"):
        results(media_path, watch_root, settings=SidecarSettings(follow_links=True, output_dir=out))


def test_missing_mirrored_folders_are_made(tmp_path: Path, watch_root: Path, results) -> None:
    media_path = watch_root / "a" / "b" / "x.jpg"
    media_path.parent.mkdir(parents=True)
    media_path.write_bytes(b"media")
    out = tmp_path / "not-yet" / "out"
    written = results(media_path, watch_root, settings=SidecarSettings(output_dir=out))
    assert written.json == out / "a" / "b" / "x.jpg.deepva.json" and written.json.is_file()


# A FIFO at a sidecar's name -------------------------------------------------------------------------------------------


def test_a_fifo_at_the_xmp_name_is_left_alone(watch_root: Path, results) -> None:
    """Not opened, not replaced: the XMP is refused at once with UnsafeSidecarPath naming it. The JSON sidecar,
    written before the XMP, stays."""
    media_path = watch_root / "x.jpg"
    media_path.write_bytes(b"media")
    fifo = watch_root / "x.jpg.xmp"
    os.mkfifo(fifo)
    inode = fifo.lstat().st_ino

    with pytest.raises(UnsafeSidecarPath, match=re.escape(f"{fifo} is a FIFO, not a regular file")):
        within_deadline(lambda: results(media_path, watch_root), fifos=[fifo])

    assert_left_alone(fifo, inode)
    assert sorted(path.name for path in watch_root.iterdir()) == ["x.jpg", "x.jpg.deepva.json", "x.jpg.xmp"]


@pytest.mark.parametrize("call", ["results", "failure"])
def test_a_fifo_at_the_json_name_is_left_alone(watch_root: Path, make, results, call: str) -> None:
    """Not replaced by a regular file: UnsafeSidecarPath names it before anything is written, the XMP included."""
    media_path = watch_root / "x.jpg"
    media_path.write_bytes(b"media")
    fifo = watch_root / "x.jpg.deepva.json"
    os.mkfifo(fifo)
    inode = fifo.lstat().st_ino

    def publish() -> WrittenSidecars:
        return results(media_path, watch_root) if call == "results" else failure(make, media_path, watch_root)

    with pytest.raises(UnsafeSidecarPath, match=re.escape(f"{fifo} is a FIFO, not a regular file")):
        within_deadline(publish, fifos=[fifo])

    assert_left_alone(fifo, inode)
    assert sorted(path.name for path in watch_root.iterdir()) == ["x.jpg", "x.jpg.deepva.json"]


def test_a_fifo_at_the_stem_name_is_another_files(watch_root: Path, make, results) -> None:
    """A stem sidecar (``clip.xmp``) that is a FIFO is treated like another file's sidecar: left alone, and the
    results go to ``clip.mxf.xmp``, with a note."""
    media_path = watch_root / "clip.mxf"
    media_path.write_bytes(b"media")
    fifo = watch_root / "clip.xmp"
    os.mkfifo(fifo)
    inode = fifo.lstat().st_ino

    written = within_deadline(lambda: results(media_path, watch_root, media=make.VIDEO_25), fifos=[fifo])

    assert written.xmp == watch_root / "clip.mxf.xmp"
    assert written.notes == ("clip.xmp is a FIFO, not a regular file, and is left alone; wrote clip.mxf.xmp instead",)
    assert_left_alone(fifo, inode)
    assert b"Jane Doe" in written.xmp.read_bytes()


# A link at a sidecar's name -------------------------------------------------------------------------------------------


def _target(tmp_path: Path, kind: str) -> Path:
    if kind == "devnull":
        return Path(os.devnull)
    target = tmp_path / "outside" / "passwd"
    target.parent.mkdir()
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.write_text("root:x:0:0:root:/root:/bin/sh\n")
        target.chmod(0o600)
    return target


@pytest.mark.parametrize("target_kind", ["file", "fifo", "devnull"])
@pytest.mark.parametrize("sidecar", ["x.jpg.xmp", "x.jpg.deepva.json"])
def test_a_link_at_a_sidecar_name_is_not_read_nor_written_through(tmp_path: Path, watch_root: Path, results,
                                                                  sidecar: str, target_kind: str) -> None:
    media_path = watch_root / "x.jpg"
    media_path.write_bytes(b"media")
    target = _target(tmp_path, target_kind)
    before = target.lstat()
    content = target.read_bytes() if target_kind == "file" else None
    link = watch_root / sidecar
    link.symlink_to(target)

    with pytest.raises(UnsafeSidecarPath, match=re.escape(f"{link} is a symbolic link, not a regular file")):
        within_deadline(lambda: results(media_path, watch_root), fifos=[target] if target_kind == "fifo" else [])

    assert link.is_symlink() and os.readlink(link) == str(target)
    after = target.lstat()
    assert (after.st_ino, after.st_mtime_ns, after.st_mode) == (before.st_ino, before.st_mtime_ns, before.st_mode)
    if content is not None:
        assert target.read_bytes() == content
    assert not [path for path in watch_root.iterdir() if ".corrupt-" in path.name or path.name.startswith(".")]


# A huge file at the XMP's name ----------------------------------------------------------------------------------------


def test_an_oversize_xmp_is_moved_aside_unread(watch_root: Path, results) -> None:
    """A valid packet followed by 20 MiB of spaces: more than the 16 MiB an XMP sidecar is read up to. Handled like a
    sidecar that is not readable XMP: moved aside intact (a note says so), never read whole, and a fresh sidecar with
    only our results is written."""
    media_path = watch_root / "x.jpg"
    media_path.write_bytes(b"media")
    sidecar = watch_root / "x.jpg.xmp"
    with sidecar.open("wb") as stream:
        stream.write(THEIR_XMP)
        stream.write(b" " * (20 * 1024 * 1024))
    size = sidecar.stat().st_size

    tracemalloc.start()
    try:
        written = results(media_path, watch_root)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 4 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB: the oversize sidecar was read"
    assert written.xmp == sidecar
    (aside,) = [path for path in watch_root.iterdir() if ".corrupt-" in path.name]
    assert aside.name.startswith("x.jpg.xmp.corrupt-") and aside.stat().st_size == size
    with aside.open("rb") as stream:
        assert stream.read(len(THEIR_XMP)) == THEIR_XMP
    (note,) = written.notes
    assert note.startswith(f"x.jpg.xmp was not readable XMP ({size} bytes, more than the 16 MiB")
    assert f"moved it to {aside.name}" in note
    fresh = sidecar.read_bytes()
    assert b"Jane Doe" in fresh and b"theirs" not in fresh


# Secrets a server echoes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["failure", "results"])
def test_a_secret_echoed_in_job_errors_stays_out_of_the_json_sidecar(watch_root: Path, make, call: str) -> None:
    secret = f"sk-{uuid.uuid4().hex}"
    register_secret(secret)
    media_path = watch_root / "x.jpg"
    media_path.write_bytes(b"media")
    server_errors = (f"401: key {secret} is not valid", f"retry with Authorization: Bearer {secret}")
    if call == "failure":
        written = failure(make, media_path, watch_root, errors=server_errors, extra=[f"gave up ({secret})"])
        expected = [f"401: key {REDACTED} is not valid", f"retry with Authorization: Bearer {REDACTED}",
                    f"gave up ({REDACTED})"]
    else:
        written = publish_results(media_path, watch_root=watch_root, settings=SidecarSettings(),
                                  job=make.job(errors=server_errors), segments=iter([]), media=make.IMAGE,
                                  provenance=make.provenance())
        expected = [f"401: key {REDACTED} is not valid", f"retry with Authorization: Bearer {REDACTED}"]
    assert written.json is not None
    raw = written.json.read_bytes()
    assert secret.encode() not in raw
    assert json.loads(raw)["job"]["errors"] == expected


# The file operations underneath ---------------------------------------------------------------------------------------


@pytest.fixture
def folder_fd(tmp_path: Path) -> Iterable[int]:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield fd
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind", ["fifo", "link", "folder"])
def test_nothing_but_a_regular_file_is_read_or_replaced(tmp_path: Path, folder_fd: int, kind: str) -> None:
    name = tmp_path / "s.xmp"
    if kind == "fifo":
        os.mkfifo(name)
    elif kind == "link":
        (tmp_path / "target").write_bytes(THEIR_XMP)
        name.symlink_to(tmp_path / "target")
    else:
        name.mkdir()
    with pytest.raises(NotARegularFile):
        within_deadline(lambda: read_regular_at(folder_fd, "s.xmp", limit=1024), fifos=[name] if kind == "fifo" else [])
    with pytest.raises(NotARegularFile):
        atomic_write_at(folder_fd, "s.xmp", lambda stream: stream.write(b"new"))
    assert not (tmp_path / temp_name_for("s.xmp")).exists()


def test_a_read_stops_at_its_limit(tmp_path: Path, folder_fd: int) -> None:
    (tmp_path / "s.xmp").write_bytes(b"x" * 1025)
    with pytest.raises(FileTooLarge):
        read_regular_at(folder_fd, "s.xmp", limit=1024)
    assert read_regular_at(folder_fd, "s.xmp", limit=1025) == b"x" * 1025
    assert read_regular_at(folder_fd, "absent.xmp", limit=1024) is None


def test_a_leftover_temporary_is_replaced_and_the_mode_kept(tmp_path: Path, folder_fd: int) -> None:
    (tmp_path / "s.xmp").write_bytes(b"old")
    (tmp_path / "s.xmp").chmod(0o664)
    (tmp_path / temp_name_for("s.xmp")).write_bytes(b"left by a crash")
    atomic_write_at(folder_fd, "s.xmp", lambda stream: stream.write(b"new"))
    assert (tmp_path / "s.xmp").read_bytes() == b"new"
    assert stat.S_IMODE((tmp_path / "s.xmp").stat().st_mode) == 0o664
    assert sorted(os.listdir(tmp_path)) == ["s.xmp"]
