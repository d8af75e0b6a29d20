"""Making untrusted text and numbers safe to write.

Labels, error texts and meta values come from a remote service. XML 1.0 cannot carry most C0 control characters, lone
surrogates or U+FFFE/U+FFFF at all (a strict parser rejects the whole file), and a lone surrogate cannot even be encoded
as UTF-8. We drop what XML cannot hold instead of escaping it, and keep everything else, however long.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

# Tab and newline stay; carriage return goes too, as the brief for our sidecars asks for C0 controls other than tab/LF.
_NOT_XML_TEXT = re.compile("[\x00-\x08\x0b-\x1f\ud800-\udfff\ufffe\uffff]")
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """Text as it may appear in an XMP sidecar."""
    return _NOT_XML_TEXT.sub("", value)


def xml_safe(value: str) -> str:
    """Text from someone else's sidecar: only what XML 1.0 cannot hold goes; a carriage return stays."""
    return _NOT_XML_CHAR.sub("", value)


def format_decimal(value: float, places: int = 6) -> str:
    """``0.300000`` → ``0.3``: always a '.' decimal point, never an exponent, whatever the locale."""
    text = format(value, f".{places}f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def json_safe(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps(allow_nan=False, ensure_ascii=False)`` accepts and UTF-8 can encode.

    Non-finite numbers become null (JSON has no NaN); lone surrogates become U+FFFD; anything that is not a JSON type
    is written as its text.
    """
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, Mapping):
        return {json_safe(str(key)): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return json_safe(str(value))
