"""sd_notify without libsystemd: one datagram per message to ``$NOTIFY_SOCKET``.

systemd's protocol is small and stable (sd_notify(3)): newline-separated ``KEY=VALUE`` lines in one datagram to an
AF_UNIX socket, whose name starts with ``@`` when it lives in the abstract namespace. Outside systemd the variable is
unset and every call is a no-op, so the daemon calls these unconditionally. A message that cannot be sent is logged
once and otherwise ignored: a notify failure must never stop media from being processed.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Callable, Mapping

import structlog

from deepva_watch.states import State

log = structlog.get_logger("deepva_watch.notify")

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"


def _address(value: str) -> str | bytes:
    if value.startswith("@"):  # abstract namespace: a leading NUL byte instead of the "@"
        return b"\0" + value[1:].encode()
    return value


class Notifier:
    """Tells systemd how the service is doing. Thread-safe; a no-op when not started by systemd with Type=notify."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        target = environ.get(NOTIFY_SOCKET_ENV, "")
        self._address = _address(target) if target else None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *lines: str) -> bool:
        """Send one message; True if it left. Lines must not contain newlines (STATUS text is flattened)."""
        if self._address is None:
            return False
        message = "\n".join(lines).encode()
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.sendto(message, self._address)
                return True
            except OSError as error:
                if not self._warned:
                    self._warned = True
                    log.warning("notify_failed", error=error.strerror or repr(error))
                return False

    def ready(self, status: str | None = None) -> bool:
        """Config, ledger and watches are up: systemd considers the start finished and runs what waits for us."""
        return self.send("READY=1", *([_status_line(status)] if status else []))

    def status(self, text: str) -> bool:
        """The one line ``systemctl status`` shows under the unit."""
        return self.send(_status_line(text))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        """A SIGHUP reload started. systemd 253+ wants the monotonic time with it to match the reload to its request."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def reloaded(self, status: str | None = None) -> bool:
        """The reload is over (applied or refused): READY=1 again ends systemd's reloading state."""
        return self.ready(status)

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([_status_line(status)] if status else []))

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def _status_line(text: str) -> str:
    return "STATUS=" + " ".join(text.split())


def watchdog_interval(environ: Mapping[str, str] = os.environ, pid: int | None = None) -> float | None:
    """Seconds within which systemd expects WATCHDOG=1, or None when no watchdog is set for this process.

    ``$WATCHDOG_PID`` names the process the watchdog is meant for; a child that inherited the environment must not
    think the watchdog is its own.
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1_000_000


class Watchdog:
    """Pings systemd at half the watchdog interval, but only while the caller vouches that every worker is alive.

    The daemon calls :meth:`tick` from its main loop with the verdict of its worker heartbeats. A stuck worker makes
    the verdict false, the pings stop, and systemd restarts the service after ``WatchdogSec``; a hung main loop stops
    the pings by itself.
    """

    def __init__(self, notifier: Notifier, interval: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.period = interval / 2 if interval else None
        self.clock = clock
        self._last_ping: float | None = None
        self.withheld_since: float | None = None

    def tick(self, workers_alive: bool) -> bool:
        """Send WATCHDOG=1 if it is due and the workers are alive; returns whether a ping was sent."""
        if self.period is None:
            return False
        now = self.clock()
        if not workers_alive:
            if self.withheld_since is None:
                self.withheld_since = now
                log.error("watchdog_withheld", reason="a worker stopped making progress; systemd will restart us")
            return False
        self.withheld_since = None
        if self._last_ping is not None and now - self._last_ping < self.period:
            return False
        self._last_ping = now
        return self.notifier.watchdog()


def stale_workers(heartbeats: Mapping[str, float], now: float, limit: float) -> list[str]:
    """Names of workers whose last heartbeat (``time.monotonic()``) is older than ``limit`` seconds."""
    return sorted(name for name, beat in heartbeats.items() if now - beat > limit)


def status_text(counts: Mapping[str, int]) -> str:
    """A STATUS= line from ledger counts by state: what is waiting, in flight, done and failed."""
    waiting = sum(counts.get(state, 0) for state in (State.SETTLING, State.SETTLED, State.ACCEPTED, State.UPLOADED))
    working = sum(counts.get(state, 0) for state in (State.UPLOADING, State.SUBMITTING, State.PUBLISHING,
                                                      State.REPORTING))
    at_deepva = sum(counts.get(state, 0) for state in (State.SUBMITTED, State.OVERDUE, State.COMPLETED,
                                                        State.JOB_FAILED))
    return (
        f"{waiting} waiting, {working} in progress, {at_deepva} at DeepVA, "
        f"{counts.get(State.PUBLISHED, 0)} published, {counts.get(State.FAILED, 0)} failed"
    )
