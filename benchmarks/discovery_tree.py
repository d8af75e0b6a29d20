"""Shared by the discovery benchmarks: building test trees, a watch on them, and measuring a process's CPU and RSS."""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deepva_watch.config import FolderConfig, parse_config  # noqa: E402


def make_tree(root: Path, folders: int, files_per_folder: int) -> Path:
    """``folders`` folders of ``files_per_folder`` small files; reused when it already exists with that shape."""
    marker = root / f".shape-{folders}x{files_per_folder}"
    if marker.exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    for folder in range(folders):
        directory = root / f"day{folder:04}"
        directory.mkdir(exist_ok=True)
        for index in range(files_per_folder):
            with open(directory / f"clip{index:05}.mxf", "wb") as stream:
                stream.write(b"x" * (1 + index % 97))
    marker.write_text("")
    return root


def folder_config(path: Path, ledger: Path, **overrides: object) -> FolderConfig:
    data = {"path": str(path), "modules": {"m": {}}, "settle_seconds": 0, **overrides}
    return parse_config({"ledger": str(ledger), "folders": [data]}).folders[0]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class Stopwatch:
    def __enter__(self) -> "Stopwatch":
        self.started = time.perf_counter()
        self.cpu_started = cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.cpu = cpu_seconds() - self.cpu_started


def quiet_logs() -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger("watchdog").setLevel(logging.ERROR)


os.environ.setdefault("PYTHONHASHSEED", "0")
