"""Fixtures shared by the whole suite: the emulator on a random loopback port, configs, and the daemon as a process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import structlog
import yaml

from tests.postgres_fixtures import postgres_database, postgres_server, postgres_url  # noqa: F401 - one server per session

FIXTURES = Path(__file__).parent / "fixtures" / "media"
API_KEY = "test-key-5f2a9c71e0b4d8"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_program(name: str) -> str:
    """Skip (on a developer's machine) or fail (in CI) when an external program a test needs is missing."""
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed; ./scripts/test installs it where it can (as root with apt)"
    if IN_CI:
        pytest.fail(f"CI must have {name}: {message}")
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """A test that runs the CLI points the logs at a captured stream that closes after it: put them back."""
    logging = structlog.get_config()
    yield
    structlog.configure(**logging)


def require_root(why: str) -> None:
    """Skip (on a developer's machine) or fail (in CI, which runs as root) a test that needs root."""
    if os.geteuid() == 0:
        return
    if IN_CI:
        pytest.fail(f"CI runs as root, yet this test is not: {why}")
    pytest.skip(why)


def mount_or_skip(*args: str) -> None:
    """Run mount(8) with ``args``: skipped where mounting is not allowed, failed in CI (which runs as root)."""
    reason = "mounting needs root and mount(8)" if os.geteuid() != 0 or shutil.which("mount") is None else None
    if reason is None:
        done = subprocess.run(["mount", *args], capture_output=True, text=True)
        if done.returncode == 0:
            return
        reason = f"mount {' '.join(args)} failed: {done.stderr.strip()}"
    if IN_CI:
        pytest.fail(f"CI runs as root, yet {reason}")
    pytest.skip(reason)


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` for the block."""
    path.mkdir(parents=True, exist_ok=True)
    mount_or_skip("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        unmount(path)


@pytest.fixture
def media_fixtures() -> Path:
    return FIXTURES


def held_to_file_modes(command: list[str]) -> list[str]:
    """``command`` so that, when we are root, it runs without the two capabilities that let root read any file: root
    that the kernel holds to file modes like anyone else (a real permission check, not a mock). ``setpriv`` (util-linux)
    drops them at exec; a ``preexec_fn`` would run Python between fork and exec, which can deadlock in a process with
    threads."""
    if os.geteuid() != 0:
        return command
    return [require_program("setpriv"), "--bounding-set", "-dac_override,-dac_read_search", *command]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def make_emulator(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """An emulator with settings of the test's choosing (on-prem roots, webhook secret, faults)."""
    from deepva_watch.emulator import Emulator, EmulatorConfig

    started: list[Any] = []

    def factory(**settings: Any) -> Any:
        settings.setdefault("processing_time", 0.3)
        emu = Emulator(EmulatorConfig(host="127.0.0.1", port=0, data_dir=tmp_path / f"emulator-data-{len(started)}",
                                      api_key=API_KEY, **settings)).start()
        started.append(emu)
        return emu

    yield factory
    for emu in started:
        emu.stop()


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Any]:
    from deepva_watch.emulator import Emulator, EmulatorConfig

    emu = Emulator(
        EmulatorConfig(host="127.0.0.1", port=0, data_dir=tmp_path / "emulator-data", api_key=API_KEY, processing_time=0.3)
    ).start()
    try:
        yield emu
    finally:
        emu.stop()


def write_config(tmp_path: Path, api_url: str, watch_dirs: list[Path], **top: Any) -> Path:
    """A complete config for a test: every watched folder runs face and object recognition, settles in 0.2 s."""
    key_file = tmp_path / "api-key"
    key_file.write_text(API_KEY + "\n")
    folder_overrides = top.pop("folder", {})
    data = {
        "api": {"url": api_url, "key_file": str(key_file), "retries": 3, "read_timeout_seconds": 10},
        "ledger": str(tmp_path / "ledger.sqlite3"),
        "poll_interval_seconds": 0.2,
        "log_level": "debug",
        "folders": [
            {
                "path": str(path),
                "modules": {"face_recognition": {"model": "celebrities"}, "object_scene_recognition": {}},
                "settle_seconds": 0.2,
                "rescan_interval_seconds": 60,
                **folder_overrides,
            }
            for path in watch_dirs
        ],
        **top,
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


def ledger_rows(ledger: Path) -> list[dict[str, Any]]:
    if not ledger.exists():
        return []
    conn = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute("SELECT * FROM assets ORDER BY id")]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class DaemonProcess:
    """``deepva-watch run`` as a real child process, with its log captured to a file."""

    def __init__(self, config: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log_path = log_path
        self.extra_env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("DEEPVA_API_KEY", "NOTIFY_SOCKET", "WATCHDOG_USEC")}
        env.update(self.extra_env)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deepva_watch", "run", "-c", str(self.config)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[[Path], DaemonProcess]]:
    started: list[DaemonProcess] = []

    def factory(config: Path, env: dict[str, str] | None = None) -> DaemonProcess:
        daemon = DaemonProcess(config, tmp_path / f"daemon-{len(started)}.log", env).start()
        started.append(daemon)
        return daemon

    yield factory
    for daemon in started:
        if daemon.process and daemon.process.poll() is None:
            daemon.kill()
