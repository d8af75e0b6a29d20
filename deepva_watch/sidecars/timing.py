"""Seconds and frames as Adobe's dynamic-media schema writes them."""

from __future__ import annotations

import math
from fractions import Fraction

# ExifTool's list of xmpDM:timeFormat values (Image::ExifTool::XMP2, struct Timecode).
_TIMECODE_FORMATS: dict[Fraction, tuple[str, str | None]] = {
    Fraction(24000, 1001): ("23976Timecode", None),
    Fraction(24): ("24Timecode", None),
    Fraction(25): ("25Timecode", None),
    Fraction(30000, 1001): ("2997NonDropTimecode", "2997DropTimecode"),
    Fraction(30): ("30Timecode", None),
    Fraction(50): ("50Timecode", None),
    Fraction(60000, 1001): ("5994NonDropTimecode", "5994DropTimecode"),
    Fraction(60): ("60Timecode", None),
}

# Without a known frame rate, markers are counted in milliseconds.
MILLISECOND_RATE = Fraction(1000)


def frame_rate_text(rate: Fraction) -> str:
    """``f25``, ``f30000s1001``: Premiere's xmpDM:frameRate form."""
    return f"f{rate.numerator}" if rate.denominator == 1 else f"f{rate.numerator}s{rate.denominator}"


def scale_text(rate: Fraction) -> str:
    """The length of one unit, the xmpDM:scale of a Time value: 25 fps → ``1/25``, 29.97 → ``1001/30000``."""
    unit = 1 / rate
    return f"{unit.numerator}/{unit.denominator}"


def seconds_to_units(seconds: float, rate: Fraction) -> int:
    """Round half up (not to even) so that 2.0 s at 29.97 fps is frame 60 and neighbours never disagree.

    Float arithmetic on purpose: it runs once per segment, and Fraction is ten times slower for no visible gain.
    """
    return math.floor(seconds * rate.numerator / rate.denominator + 0.5)


def timecode_format(rate: Fraction | None, timecode: str) -> str | None:
    """The xmpDM:timeFormat for a start timecode; ';' or '.' before the frames marks drop-frame counting."""
    if rate is None or rate not in _TIMECODE_FORMATS:
        return None
    non_drop, drop = _TIMECODE_FORMATS[rate]
    is_drop = ";" in timecode or timecode.count(".") == 1 and timecode.rfind(".") > timecode.rfind(":")
    return drop if (is_drop and drop) else non_drop
