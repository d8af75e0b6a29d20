"""What the benchmarks share: the emulator and the daemon as separate processes, and reading their figures.

Each process is measured from /proc (CPU seconds, peak RSS), so the figures are the daemon's own and not mixed with
the emulator's or the benchmark's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "media"
sys.path.insert(0, str(ROOT))  # the media makers the tests use (tests/testvideo.py)
from tests.testvideo import make_test_video  # noqa: E402,F401 - for the benchmarks that make videos
KEY = "benchmark-key-7d1c0e9a44"


@dataclass
class Process:
    popen: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_seconds(self) -> float:
        """User and system CPU of this process and every process it started (a child of the daemon's),
        live or ended."""
        return sum(_cpu_seconds(pid, ended_children=pid == self.pid) for pid in (self.pid, *self.descendants()))

    def peak_rss_mb(self) -> float:
        """The peak resident memory of this process plus the peaks of the processes it started: an upper bound of
        their peak together, since the peaks need not come at the same moment."""
        return sum(_peak_rss_mb(pid) for pid in (self.pid, *self.descendants()))

    def descendants(self) -> list[int]:
        return descendants(self.pid)

    def stop(self, timeout: float = 60) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=timeout)


def descendants(root: int) -> list[int]:
    """Every live process started by ``root``, its children's children included."""
    found: list[int] = []
    pending = [root]
    while pending:
        pid = pending.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children = [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(children)
            pending.extend(children)
    return found


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process and of every process it started, live or ended (a server and its backends)."""
    return sum(_cpu_seconds(pid, ended_children=pid == root) for pid in (root, *descendants(root)))


def _cpu_seconds(pid: int, *, ended_children: bool) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if ended_children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    for line in lines:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_emulator(run: Path, processing_time: float, data_dir: Path | None = None) -> tuple[Process, str]:
    """``data_dir``: where the emulator stores uploads (default: inside ``run``)."""
    key_file = run / "api-key"
    key_file.write_text(KEY)
    log = open(run / "emulator.log", "w")
    popen = subprocess.Popen(
        [sys.executable, "-m", "deepva_watch", "emulator", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(data_dir or run / "emulator-data"), "--key-file", str(key_file),
         "--processing-time", str(processing_time)],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )
    line = popen.stdout.readline() if popen.stdout else ""
    match = re.search(r"(http://\S+/api/v1)", line)
    if not match:
        raise SystemExit(f"emulator did not start: {line!r}")
    return Process(popen), match.group(1)


def scratch_dir(prefix: str) -> Path:
    """A folder for what stands in for DeepVA's side (the emulator's storage): in memory where the machine has
    /dev/shm, so that the figures are the daemon's and not the emulator's disk writes."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def create_cost_us(folder: Path, count: int = 500, name: str = "create-cost") -> float:
    """CPU microseconds to create, write and rename one small file in ``folder``, the way a sidecar is written.

    A baseline for the throughput figures: on ext4 without a journal a file created within minutes of mass
    deletions (an earlier run's clean-up) costs ten times more kernel time, because the inode allocator skips
    recently deleted inodes one by one. The files are left for the caller's clean-up."""
    probe = folder / name
    probe.mkdir()
    started = time.process_time()
    for index in range(count):
        temp = probe / f".f{index}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"x" * 2048)
        os.close(fd)
        os.rename(temp, probe / f"f{index}.xmp")
    return (time.process_time() - started) / count * 1e6


def machine_speed_ms(rounds: int = 3, iterations: int = 20_000) -> float:
    """CPU milliseconds for a fixed piece of pure-Python work of the daemon's kind (JSON, dicts, strings), best of
    ``rounds``: a baseline for the throughput figures on a shared machine.

    When the host is busy with other guests this machine's cores run slower without it being reported as steal time,
    and every process's CPU per file rises together. A run whose figure here is well above its usual value was taken on
    a slow machine, and its files per second say so rather than anything about the daemon. Fewer ``iterations`` make a
    sample cheap enough to take during a run; the figure is always scaled to 20,000."""
    record = {"id": "0f6c3d8e-4c1a-4f57-9a0e-2d5b7c9e1f30", "state": "completed", "progress": 100,
              "modules": {"face_recognition": {"model": "celebrities"}}, "labels": [f"label {n}" for n in range(8)]}
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for index in range(iterations):
            text = json.dumps({**record, "index": index}, sort_keys=True)
            decoded = json.loads(text)
            "|".join(sorted(decoded["labels"])).upper().split("|")
        best = min(best, time.process_time() - started)
    return best * 1000 * 20_000 / iterations


def emulator_stats(api_url: str) -> dict:
    base = api_url.split("/api/v1")[0]
    with urllib.request.urlopen(f"{base}/_emulator/stats", timeout=10) as response:
        return json.load(response)


def start_daemon(run: Path, config_text: str, log_level: str = "warning") -> Process:
    config = run / "config.yaml"
    config.write_text(config_text)
    log = open(run / "daemon.log", "w")
    popen = subprocess.Popen([sys.executable, "-m", "deepva_watch", "run", "-c", str(config), "--log-level", log_level],
                             stdout=log, stderr=subprocess.STDOUT)
    return Process(popen)


def count_states(ledger: Path | str) -> dict[str, int]:
    """Rows by state: of a SQLite file, or of a PostgreSQL ledger given by its URL."""
    if isinstance(ledger, str):
        return postgres_counts(ledger)
    if not ledger.exists():
        return {}
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=30)
    try:
        return dict(conn.execute("SELECT state, COUNT(*) FROM assets GROUP BY state").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


def postgres_counts(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as conn:
        try:
            return dict(conn.execute("SELECT state, COUNT(*) FROM assets GROUP BY state").fetchall())
        except psycopg.errors.UndefinedTable:  # before the first daemon made the schema
            return {}


def postgres_bytes(url: str) -> int:
    """The size of the ledger's database on disk."""
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0


def wait_until(predicate, timeout: float, interval: float = 0.25):
    """Poll until ``predicate`` is truthy or the time is up (it is asked once more at the deadline); its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def report(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    print(f"\n== {title}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
