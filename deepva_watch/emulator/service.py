"""Starting, stopping and inspecting one emulator from Python."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from . import render
from .config import EmulatorConfig
from .server import EmulatorHTTPServer
from .state import EmulatorState

log = logging.getLogger("deepva_watch.emulator")


class Emulator:
    """A DeepVA-compatible server on loopback, serving from a daemon thread.

    ::

        with Emulator(EmulatorConfig(processing_time=0)) as emulator:
            client = Client(emulator.base_url, key=emulator.config.api_key)
            ...
            assert emulator.stats()["jobs_created"] == 1
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._owned_data_dir: Path | None = None
        self._state: EmulatorState | None = None

    def start(self) -> "Emulator":
        if self._server is not None:
            raise RuntimeError("emulator already started")
        data_dir = self.config.data_dir
        if data_dir is None:
            data_dir = self._owned_data_dir = Path(tempfile.mkdtemp(prefix="deepva-emulator-"))
        self._state = EmulatorState(
            Path(data_dir), self.config.clock, self.config.processing_time, self.config.queue_time
        )
        self._server = EmulatorHTTPServer(
            (self.config.host, self.config.port), self._state, self.config.api_key, self.config.read_size
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="deepva-emulator", daemon=True
        )
        self._thread.start()
        log.info("DeepVA emulator (not the real service) listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._owned_data_dir is not None:
            shutil.rmtree(self._owned_data_dir, ignore_errors=True)
            self._owned_data_dir = None

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._running().server_address[1])

    @property
    def origin(self) -> str:
        host = self._running().server_address[0]
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/api/v1``: what a client is configured with."""
        return f"{self.origin}/api/v1"

    @property
    def data_dir(self) -> Path:
        return self._running_state()._storage_dir.parent

    def stats(self) -> dict[str, Any]:
        """The same counters as ``GET /_emulator/stats``."""
        return self._running_state().stats()

    def jobs(self) -> list[dict[str, Any]]:
        """Every job as ``GET /jobs/{id}/`` would show it now, newest first."""
        state = self._running_state()
        return [render.job_json(state, job, self.origin) for job in state.jobs_newest_first()]

    def set_processing_time(self, seconds: float) -> None:
        """Takes effect for jobs created afterwards."""
        self._running_state().set_processing_time(seconds)

    def _running(self) -> EmulatorHTTPServer:
        if self._server is None:
            raise RuntimeError("emulator is not running; call start() first")
        return self._server

    def _running_state(self) -> EmulatorState:
        if self._state is None:
            raise RuntimeError("emulator was never started")
        return self._state
