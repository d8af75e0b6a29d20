"""Read a media file's technical facts: picture size, exact frame rate, duration, frame count and start timecode.

These facts place DeepVA's results in time and space (frame numbers to timecode, boxes to pixels), so a wrong guess is
worse than an honest "unknown": every reader here returns None for what it cannot read and never raises for a file it
does not understand. Logging is left to the caller, which knows which asset this is.

mediainfo (through pymediainfo, which ships libmediainfo in its wheels) is the main reader because it reads headers
only and knows broadcast containers well (MXF material-package timecode, QuickTime ``tmcd``). ffprobe, when it is on
PATH, is a fallback for files mediainfo finds no picture in. Neither reads the file into memory.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping

from deepva_watch.mediainfo import parse_with_mediainfo
from deepva_watch.media import MediaFacts, MediaKind

#: mediainfo's parse_speed: 0 reads container headers (and the end of an MPEG stream for its duration) only, so probing
#: a 100 GB MXF costs about as much as probing a 1 MB one.
MEDIAINFO_PARSE_SPEED = 0.0

#: ffprobe runs as a child process; this bounds it on a file that makes it read far more than its headers.
FFPROBE_TIMEOUT_SECONDS = 30.0

# Frame rates that decimal renderings ("29.970") stand for. A tolerance of 1/500 frame per second separates each from
# its integer neighbour (29.97 vs 30 differ by 0.03) while absorbing three-decimal rounding.
_NTSC_RATES = tuple(Fraction(rate * 1000, 1001) for rate in (15, 24, 30, 48, 60, 120))
_NTSC_TOLERANCE = Fraction(1, 500)


def probe(path: Path, mime: str, kind: MediaKind, *, pass_fds: tuple[int, ...] = ()) -> MediaFacts:
    """Facts of a file that sniffing accepted as ``mime``/``kind``; unknown values are None, nothing is raised.
    ``pass_fds``: descriptors ffprobe must inherit when ``path`` names an open descriptor (``/proc/self/fd/N``).

    mediainfo answers first; ffprobe is asked only when mediainfo found no picture (no width), which is what happens
    with a damaged or unusual file. When neither reads it, the facts carry only ``kind`` and ``mime``.
    """
    unknown = MediaFacts(kind=kind, mime=mime)
    if not _is_regular_file(path):
        return unknown
    if kind == "image":
        still = probe_image(path, mime)
        if still is not None:
            return still
    facts = probe_with_mediainfo(path, mime, kind)
    if facts is not None and facts.width is not None:
        return facts
    fallback = probe_with_ffprobe(path, mime, kind, pass_fds=pass_fds)
    if fallback is not None and fallback.width is not None:
        return fallback
    return facts or fallback or unknown


def probe_image(path: Path, mime: str) -> MediaFacts | None:
    """A still's pixel size from its header, with Pillow: about a hundredth of what a mediainfo parse costs, which
    matters when a card of thousands of stills arrives. The size is the stored one (EXIF orientation is not applied),
    which is what MWG regions' ``AppliedToDimensions`` means."""
    try:
        from PIL import Image, UnidentifiedImageError

        with Image.open(path) as image:
            width, height = image.size
    except (ImportError, OSError, UnidentifiedImageError, ValueError):
        return None
    if width <= 0 or height <= 0:
        return None
    return MediaFacts(kind="image", mime=mime, width=width, height=height)


def probe_with_mediainfo(path: Path, mime: str, kind: MediaKind) -> MediaFacts | None:
    """Facts as mediainfo reads them, or None when libmediainfo is unavailable or fails on the file."""
    try:
        info = parse_with_mediainfo(
            path,
            parse_speed=MEDIAINFO_PARSE_SPEED,
            # Without this, frame_0001.jpg next to frame_0002.jpg is reported as one image-sequence *video*.
            mediainfo_options={"File_TestContinuousFileNames": "0"},
        )
    except (OSError, RuntimeError, ValueError, SyntaxError):
        # SyntaxError covers xml.etree's ParseError on output mediainfo could not render; the file is what is odd.
        return None
    if info is None:
        return None

    general: Any = next((track for track in info.tracks if track.track_type == "General"), None)
    picture: Any = next((track for track in info.tracks if track.track_type == "Video"), None)
    if picture is None:
        picture = next((track for track in info.tracks if track.track_type == "Image"), None)
    if picture is None:
        return MediaFacts(kind=kind, mime=mime)

    width, height = _positive_int(picture.width), _positive_int(picture.height)
    if kind == "image":
        return MediaFacts(kind=kind, mime=mime, width=width, height=height)

    frame_rate = _fraction_from_parts(picture.framerate_num, picture.framerate_den)
    if frame_rate is None:
        frame_rate = _fraction_from_decimal(picture.frame_rate)
    if frame_rate is None and general is not None:
        frame_rate = _fraction_from_decimal(general.frame_rate)

    duration_ms = _positive_float(general.duration if general is not None else None)
    if duration_ms is None:
        duration_ms = _positive_float(picture.duration)
    frame_count = _positive_int(picture.frame_count)
    if frame_count is None and general is not None:
        frame_count = _positive_int(general.frame_count)

    return MediaFacts(
        kind=kind,
        mime=mime,
        width=width,
        height=height,
        frame_rate=frame_rate,
        duration_seconds=duration_ms / 1000 if duration_ms is not None else None,
        frame_count=frame_count,
        start_timecode=_mediainfo_start_timecode(info.tracks, picture),
    )


def probe_with_ffprobe(path: Path, mime: str, kind: MediaKind, *, pass_fds: tuple[int, ...] = ()) -> MediaFacts | None:
    """Facts as ffprobe reads them, or None when ffprobe is not on PATH, fails, or times out."""
    executable = shutil.which("ffprobe")
    if executable is None:
        return None
    command = [
        executable, "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
        # The file: prefix stops a name such as "http:x.mp4" from being taken as a URL.
        "file:" + os.fspath(Path(path).absolute()),
    ]
    try:
        completed = subprocess.run(
            command, capture_output=True, timeout=FFPROBE_TIMEOUT_SECONDS, check=False, stdin=subprocess.DEVNULL,
            pass_fds=pass_fds,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if completed.returncode != 0:
        return None
    try:
        report = json.loads(completed.stdout)
    except ValueError:
        return None
    if not isinstance(report, dict):
        return None
    streams: list[Mapping[str, Any]] = [stream for stream in report.get("streams") or [] if isinstance(stream, dict)]
    found = report.get("format")
    container: Mapping[str, Any] = found if isinstance(found, dict) else {}
    picture = next((stream for stream in streams if stream.get("codec_type") == "video"), None)
    if picture is None:
        return MediaFacts(kind=kind, mime=mime)

    width, height = _positive_int(picture.get("width")), _positive_int(picture.get("height"))
    if kind == "image":
        # ffprobe's image demuxer reports a nominal 25 fps for a still; only the size means anything.
        return MediaFacts(kind=kind, mime=mime, width=width, height=height)

    frame_rate = _fraction_from_ratio(picture.get("r_frame_rate")) or _fraction_from_ratio(picture.get("avg_frame_rate"))
    duration = _positive_float(container.get("duration")) or _positive_float(picture.get("duration"))
    return MediaFacts(
        kind=kind,
        mime=mime,
        width=width,
        height=height,
        frame_rate=frame_rate,
        duration_seconds=duration,
        frame_count=_positive_int(picture.get("nb_frames")),
        start_timecode=_ffprobe_start_timecode(container, streams),
    )


def _is_regular_file(path: Path) -> bool:
    # A FIFO would block both readers forever; sniffing rejects them, but probe may be called on its own.
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _mediainfo_start_timecode(tracks: list[Any], picture: Any) -> str | None:
    """Prefer a timecode track, and in MXF the material package's, which is the timeline editors see."""
    timecode_tracks = [
        track for track in tracks if track.track_type == "Other" and _text(track.time_code_of_first_frame)
    ]
    for track in timecode_tracks:
        if _text(track.time_code_settings) == "Material Package":
            return _text(track.time_code_of_first_frame)
    if timecode_tracks:
        return _text(timecode_tracks[0].time_code_of_first_frame)
    # MPEG-2 streams without a container timecode carry one in the first GOP header.
    return _text(picture.time_code_of_first_frame)


def _ffprobe_start_timecode(container: Mapping[str, Any], streams: list[Mapping[str, Any]]) -> str | None:
    candidates: list[Any] = [container.get("tags")] + [stream.get("tags") for stream in streams]
    for tags in candidates:
        if isinstance(tags, dict):
            timecode = _text(tags.get("timecode"))
            if timecode:
                return timecode
    return None


def _snap_to_ntsc(rate: Fraction) -> Fraction:
    for ntsc in _NTSC_RATES:
        if abs(rate - ntsc) <= _NTSC_TOLERANCE:
            return ntsc
    return rate


def _fraction_from_parts(numerator: Any, denominator: Any) -> Fraction | None:
    top, bottom = _positive_int(numerator), _positive_int(denominator)
    if top is None or bottom is None:
        return None
    return _snap_to_ntsc(Fraction(top, bottom))


def _fraction_from_ratio(value: Any) -> Fraction | None:
    """ffprobe writes rates as "30000/1001"; "0/0" means it does not know."""
    text = _text(value)
    if text is None or "/" not in text:
        return _fraction_from_decimal(text)
    numerator, _, denominator = text.partition("/")
    return _fraction_from_parts(numerator, denominator)


def _fraction_from_decimal(value: Any) -> Fraction | None:
    """mediainfo's "29.970" is a rounded rendering; snap it to 30000/1001, and "25.000" to exactly 25."""
    text = _text(value)
    if text is None:
        return None
    try:
        rate = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    if rate <= 0:
        return None
    snapped = _snap_to_ntsc(rate)
    return snapped if snapped != rate else rate.limit_denominator(1001)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _positive_int(value: Any) -> int | None:
    text = _text(value)
    if text is None:
        return None
    try:
        number = int(float(text)) if not text.isdigit() else int(text)
    except (ValueError, OverflowError):
        return None
    return number if number > 0 else None


def _positive_float(value: Any) -> float | None:
    text = _text(value)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number > 0 and number != float("inf") else None
