"""libmediainfo, one call at a time in this process.

libmediainfo is not safe to call from two threads at once: concurrent parses crash the process (SIGSEGV) or hang it
within seconds (as publishing workers on a burst of finished video jobs can). A parse of headers takes about 3 ms, so
taking turns costs next to nothing. The one module the emulator shares with the daemon: in tests both run in one
process, and the turn must be the same for both.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

_TURN = threading.Lock()


def parse_with_mediainfo(path: Path, **options: Any) -> Any | None:
    """``MediaInfo.parse(path, **options)`` in turn; None when pymediainfo or libmediainfo is not there. A parse
    failure raises as the parse does."""
    # Imported here so that a broken pymediainfo install degrades to the ffprobe path instead of failing at import.
    try:
        from pymediainfo import MediaInfo
    except ImportError:
        return None
    with _TURN:
        if not MediaInfo.can_parse():
            return None
        return MediaInfo.parse(os.fspath(path), **options)
