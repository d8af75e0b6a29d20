"""Probing reads exact facts from the committed fixtures and returns unknowns, never errors, for what it cannot read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import pytest
from PIL import Image

from deepva_watch.media import MediaFacts
from deepva_watch.media.probe import probe, probe_with_ffprobe, probe_with_mediainfo
from tests.conftest import require_program

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "media"

@pytest.fixture
def needs_ffprobe() -> None:
    """The fallback reader: skipped with a reason on a machine without it, a failure in CI."""
    require_program("ffprobe")

VIDEO_FACTS = {
    "sample.mp4": ("video/mp4", Fraction(25), 1.0, 25, None),
    "ntsc.mp4": ("video/mp4", Fraction(30000, 1001), 1.001, 30, None),
    "pal50.mp4": ("video/mp4", Fraction(50), 1.0, 50, None),
    "sample.mpg": ("video/mpeg", Fraction(25), 1.0, 25, "00:00:00:00"),
    "sample.mxf": ("application/mxf", Fraction(25), 1.0, 25, "10:00:00:00"),
    "sample.mov": ("video/quicktime", Fraction(30000, 1001), 1.001, 30, "01:00:00:00"),
}


@pytest.mark.parametrize("name", sorted(VIDEO_FACTS))
def test_video_fixture_facts(name: str) -> None:
    mime, rate, duration, frames, timecode = VIDEO_FACTS[name]
    facts = probe(FIXTURES / name, mime, "video")
    assert facts.kind == "video" and facts.mime == mime
    assert (facts.width, facts.height) == (160, 90)
    assert isinstance(facts.frame_rate, Fraction) and facts.frame_rate == rate
    assert facts.duration_seconds == pytest.approx(duration, abs=0.002)
    assert facts.frame_count == frames
    assert facts.start_timecode == timecode


@pytest.mark.parametrize(
    ("name", "mime", "size"),
    [("sample.jpg", "image/jpeg", (640, 360)), ("portrait.jpg", "image/jpeg", (300, 400)), ("sample.png", "image/png", (320, 240))],
)
def test_image_fixture_facts(name: str, mime: str, size: tuple[int, int]) -> None:
    assert probe(FIXTURES / name, mime, "image") == MediaFacts("image", mime, width=size[0], height=size[1])


def test_image_sizes_agree_with_pillow() -> None:
    for name in ("sample.jpg", "portrait.jpg", "sample.png"):
        facts = probe(FIXTURES / name, "image/jpeg", "image")
        with Image.open(FIXTURES / name) as image:
            assert (facts.width, facts.height) == image.size


def test_numbered_images_are_not_taken_for_an_image_sequence(tmp_path: Path) -> None:
    # mediainfo otherwise reads frame_0001.jpg .. frame_0003.jpg as one three-frame video.
    for number in (1, 2, 3):
        shutil.copy(FIXTURES / "sample.jpg", tmp_path / f"frame_{number:04d}.jpg")
    facts = probe(tmp_path / "frame_0001.jpg", "image/jpeg", "image")
    assert facts == MediaFacts("image", "image/jpeg", width=640, height=360)


@pytest.mark.parametrize("name", ["text-named.jpg", "html-named.jpg", "empty.jpg"])
def test_unreadable_content_gives_unknowns(name: str) -> None:
    assert probe(FIXTURES / name, "image/jpeg", "image") == MediaFacts("image", "image/jpeg")


def test_truncated_mp4_gives_unknowns() -> None:
    assert probe(FIXTURES / "truncated.mp4", "video/mp4", "video") == MediaFacts("video", "video/mp4")


def test_missing_file_gives_unknowns(tmp_path: Path) -> None:
    assert probe(tmp_path / "gone.mp4", "video/mp4", "video") == MediaFacts("video", "video/mp4")


def test_directory_gives_unknowns(tmp_path: Path) -> None:
    assert probe(tmp_path, "video/mp4", "video") == MediaFacts("video", "video/mp4")


def test_fifo_gives_unknowns_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.mxf"
    os.mkfifo(fifo)
    results: list[MediaFacts] = []
    worker = threading.Thread(target=lambda: results.append(probe(fifo, "application/mxf", "video")), daemon=True)
    worker.start()
    worker.join(timeout=5)
    if worker.is_alive():
        descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(descriptor)
        pytest.fail("probe blocked on a FIFO")
    assert results == [MediaFacts("video", "application/mxf")]


CONCURRENT_PROBES = """
import sys, threading
from pathlib import Path
from deepva_watch.emulator.probe import probe_video
from deepva_watch.media.probe import probe_with_mediainfo

fixtures, rounds = Path(sys.argv[1]), int(sys.argv[2])
videos = [("sample.mxf", "application/mxf"), ("sample.mp4", "video/mp4"), ("sample.mov", "video/quicktime")]
wrong = []

def read(worker):
    for turn in range(rounds):
        name, mime = videos[(worker + turn) % len(videos)]
        if worker == 0:  # the emulator's reader shares the process with the daemon's stages in tests
            facts = probe_video(fixtures / name)
            ok = facts.frame_rate > 0
        else:
            facts = probe_with_mediainfo(fixtures / name, mime, "video")
            ok = facts is not None and facts.width == 160
        if not ok:
            wrong.append((name, facts))

threads = [threading.Thread(target=read, args=(worker,)) for worker in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(f"wrong: {wrong}" if wrong else "ok")
"""


def test_many_threads_may_probe_at_once(tmp_path: Path) -> None:
    """libmediainfo crashes (SIGSEGV) or hangs when two threads parse at once, as three publish workers finishing a
    burst of video jobs together can. Run in a child process, so a crash fails this test, not the run."""
    script = tmp_path / "probe_concurrently.py"
    script.write_text(CONCURRENT_PROBES)
    done = subprocess.run([sys.executable, str(script), str(FIXTURES), "150"], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, f"exit code {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip() == "ok"


def test_mediainfo_reads_every_video_fixture_itself() -> None:
    for name, (mime, rate, _, frames, timecode) in VIDEO_FACTS.items():
        facts = probe_with_mediainfo(FIXTURES / name, mime, "video")
        assert facts is not None, name
        assert (facts.frame_rate, facts.frame_count, facts.start_timecode) == (rate, frames, timecode), name


@pytest.mark.usefixtures("needs_ffprobe")
@pytest.mark.parametrize("name", ["sample.mp4", "ntsc.mp4", "pal50.mp4", "sample.mxf", "sample.mov"])
def test_ffprobe_fallback_reads_the_same_core_facts(name: str) -> None:
    mime, rate, duration, _, timecode = VIDEO_FACTS[name]
    facts = probe_with_ffprobe(FIXTURES / name, mime, "video")
    assert facts is not None
    assert (facts.width, facts.height, facts.frame_rate) == (160, 90, rate)
    assert facts.duration_seconds == pytest.approx(duration, abs=0.002)
    assert facts.start_timecode == timecode


@pytest.mark.usefixtures("needs_ffprobe")
def test_ffprobe_reports_only_size_for_images() -> None:
    assert probe_with_ffprobe(FIXTURES / "portrait.jpg", "image/jpeg", "image") == MediaFacts(
        "image", "image/jpeg", width=300, height=400
    )


@pytest.mark.usefixtures("needs_ffprobe")
def test_ffprobe_on_text_gives_no_picture() -> None:
    facts = probe_with_ffprobe(FIXTURES / "text-named.jpg", "image/jpeg", "image")
    assert facts is None or facts == MediaFacts("image", "image/jpeg")


def test_ffprobe_absent_means_no_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    assert probe_with_ffprobe(FIXTURES / "sample.mp4", "video/mp4", "video") is None


@pytest.mark.usefixtures("needs_ffprobe")
def test_probe_falls_back_to_ffprobe_when_mediainfo_cannot_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import deepva_watch.media.probe as probe_module

    monkeypatch.setattr(probe_module, "probe_with_mediainfo", lambda path, mime, kind: None)
    facts = probe(FIXTURES / "sample.mxf", "application/mxf", "video")
    assert (facts.width, facts.frame_rate, facts.start_timecode) == (160, Fraction(25), "10:00:00:00")


@pytest.mark.parametrize(
    ("rendered", "exact"),
    [
        ("29.970", Fraction(30000, 1001)),
        ("29.97", Fraction(30000, 1001)),
        ("23.976", Fraction(24000, 1001)),
        ("59.940", Fraction(60000, 1001)),
        ("25.000", Fraction(25)),
        ("30.000", Fraction(30)),
        ("12.500", Fraction(25, 2)),
        ("0.000", None),
        ("", None),
        ("n/a", None),
    ],
)
def test_decimal_frame_rates_become_exact(rendered: str, exact: Fraction | None) -> None:
    from deepva_watch.media.probe import _fraction_from_decimal

    assert _fraction_from_decimal(rendered) == exact


@pytest.mark.parametrize(
    ("ratio", "exact"),
    [("30000/1001", Fraction(30000, 1001)), ("2997/100", Fraction(30000, 1001)), ("25/1", Fraction(25)), ("0/0", None)],
)
def test_ffprobe_ratios_become_exact(ratio: str, exact: Fraction | None) -> None:
    from deepva_watch.media.probe import _fraction_from_ratio

    assert _fraction_from_ratio(ratio) == exact
