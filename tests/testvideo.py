"""Videos made on the spot with ffmpeg's test pattern, for tests and benchmarks that must know a video's facts exactly
(the committed fixtures in ``tests/fixtures/media`` cover the formats)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def make_test_video(path: Path, *, size: str, rate: float, seconds: float) -> Path:
    """An H.264 MP4 of ``seconds`` at ``rate`` fps and ``size`` (``WxH``); raises FileNotFoundError without ffmpeg."""
    if shutil.which("ffmpeg") is None:
        raise FileNotFoundError("ffmpeg is not installed")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc2=size={size}:rate={rate}:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
         "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip
    return path
