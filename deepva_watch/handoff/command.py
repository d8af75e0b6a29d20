"""Run an action's command: no shell, a clean environment, a timeout that kills the whole process group, and only
the last lines of what it printed kept (a chatty command cannot fill memory)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TAIL_BYTES = 4096
TAIL_LINES = 10
#: The daemon's own variables a command may see; nothing else of its environment (the API key may be there).
PASSED_ON = ("PATH", "LANG", "LC_ALL", "TZ", "HOME")


@dataclass(frozen=True)
class CommandResult:
    code: int | None
    """The exit code; None when it was killed at its timeout."""
    tail: str

    def describe(self, program: str, timeout: float) -> str:
        said = f": {self.tail}" if self.tail else ""
        if self.code is None:
            return f"{program} was killed after {timeout:g} s{said}"
        return f"{program} exited {self.code}{said}"


def run_command(argv: Sequence[str], variables: Mapping[str, str], timeout: float) -> CommandResult:
    """Raises OSError when the program cannot be started."""
    env = {name: os.environ[name] for name in PASSED_ON if name in os.environ} | dict(variables)
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True, close_fds=True)
        try:
            code: int | None = process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the command and whatever it started
            process.wait()
            code = None
        size = output.seek(0, os.SEEK_END)
        output.seek(max(0, size - TAIL_BYTES))
        text = output.read().decode("utf-8", "replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return CommandResult(code, " | ".join(lines[-TAIL_LINES:]))
