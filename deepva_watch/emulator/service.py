"""Starting, stopping and inspecting one emulator from Python, and changing it while it runs.

Besides the HTTP server this owns the two things that live outside requests: the webhook ticker (only when a webhook
secret is configured) and outages. An outage in ``refuse`` mode closes the listening socket and later binds a new one on
the same port, so clients see "connection refused" in between; a ``down_for`` timer ends an outage by itself.
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from . import render
from .config import EmulatorConfig
from .faults import FaultInjector, FaultPlan
from .server import EmulatorHTTPServer
from .state import EmulatorState, StateOptions
from .webhooks import WebhookSender, WebhookSettings, WebhookTicker

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
        self._ticker: WebhookTicker | None = None
        self._faults = FaultInjector(self.config.fault_plan)
        self._outage_lock = threading.RLock()
        self._listening = False
        self._origin = ""
        self._outage_generation = 0
        self._outage_timer: threading.Timer | None = None

    def start(self) -> Emulator:
        if self._server is not None:
            raise RuntimeError("emulator already started")
        config = self.config
        data_dir = config.data_dir
        if data_dir is None:
            data_dir = self._owned_data_dir = Path(tempfile.mkdtemp(prefix="deepva-emulator-"))
        options = StateOptions(config.onprem_roots, config.fetch_max_bytes, config.fetch_timeout)
        self._state = EmulatorState(
            Path(data_dir),
            config.clock,
            config.processing_time,
            config.queue_time,
            options,
            self._faults,
            video_processing_ratio=config.video_processing_ratio,
        )
        self._server = EmulatorHTTPServer(
            (config.host, config.port), self._state, config.api_key, config.read_size, self
        )
        self._origin = f"http://{self._server.server_name_and_port()}"
        self._serve()
        if config.webhook_secret is not None:
            settings = WebhookSettings(
                config.webhook_secret.encode("utf-8"),
                config.webhook_signature_header,
                config.webhook_nonce_header,
                config.webhook_timeout,
            )
            sender = WebhookSender(settings, self._state.count_webhook)
            self._ticker = WebhookTicker(self._state, sender, lambda: self._origin, config.webhook_interval).start()
        log.info("DeepVA emulator (not the real service) listening on %s", self.base_url)
        self.apply_outage()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping.set()
        with self._outage_lock:
            self._outage_generation += 1
            if self._outage_timer is not None:
                self._outage_timer.cancel()
            self._stop_listening(server)
        server.server_close()
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        if self._owned_data_dir is not None:
            shutil.rmtree(self._owned_data_dir, ignore_errors=True)
            self._owned_data_dir = None

    def __enter__(self) -> Emulator:
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
        self._running()
        return self._origin

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/api/v1``: what a client is configured with."""
        return f"{self.origin}/api/v1"

    @property
    def data_dir(self) -> Path:
        return self._running_state().storage_dir.parent

    def stats(self) -> dict[str, Any]:
        """The same counters as ``GET /_emulator/stats``."""
        return self._running_state().stats()

    def jobs(self) -> list[dict[str, Any]]:
        """Every job as ``GET /jobs/{id}/`` would show it now, newest first."""
        state = self._running_state()
        return [render.job_json(state, job, self.origin) for job in state.jobs_newest_first()]

    def set_processing_time(self, seconds: float) -> None:
        """Takes effect for jobs created afterwards (with ``video_processing_ratio``: for their image sources)."""
        self._running_state().set_processing_time(seconds)

    # -- faults, outages and the key ---------------------------------------------------------------------------

    @property
    def faults(self) -> FaultPlan:
        return self._faults.plan

    def set_faults(self, plan: FaultPlan | Mapping[str, Any] | None = None, **changes: Any) -> FaultPlan:
        """Replaces the plan (a :class:`FaultPlan`) or merges JSON-like fields into it, like ``POST /_emulator/faults``.

        ``emulator.set_faults(error_rate={"POST /api/v1/jobs/": 0.5}, seed=7)``. The random source restarts from the
        plan's seed, so the faults that follow are the same on every run. An outage takes effect before this returns.
        """
        if isinstance(plan, FaultPlan):
            self._install(replace(plan, **changes) if changes else plan)
        else:
            self.update_faults({**(plan or {}), **changes})
        self.apply_outage()
        return self._faults.plan

    def clear_faults(self) -> None:
        """No faults from now on; an outage ends at once."""
        self.set_faults(FaultPlan())

    def update_faults(self, changes: Mapping[str, Any] | None) -> FaultPlan:
        plan = FaultPlan() if changes is None else FaultPlan.from_json(changes, self._faults.plan)
        self._install(plan)
        return plan

    def rotate_key(self, key: str) -> None:
        """From now on only ``key`` is accepted; clients still sending the old one get 401."""
        if not key:
            raise ValueError("api_key must not be empty")
        self._running().api_key = key.encode("utf-8")

    def apply_outage(self) -> None:
        """Closes or reopens the listening socket to match the plan; safe to call at any time."""
        with self._outage_lock:
            server = self._server
            if server is None:
                return
            plan = self._faults.plan
            refusing = plan.down and plan.down_mode == "refuse"
            if refusing and self._listening:
                self._stop_listening(server)
                log.info("emulator outage: refusing connections")
            elif not refusing and not self._listening:
                self._reopen(server)
                log.info("emulator outage over: listening again on %s", self._origin)
            if plan.down:
                server.close_connections()  # kept-alive connections must see the outage too

    def _install(self, plan: FaultPlan) -> None:
        with self._outage_lock:
            self._faults.replace_plan(plan, reseed=True)
            self._outage_generation += 1
            if self._outage_timer is not None:
                self._outage_timer.cancel()
                self._outage_timer = None
            if plan.down and plan.down_for:
                generation = self._outage_generation
                self._outage_timer = threading.Timer(plan.down_for, self._end_outage, (generation,))
                self._outage_timer.daemon = True
                self._outage_timer.start()

    def _end_outage(self, generation: int) -> None:
        with self._outage_lock:
            if generation != self._outage_generation or self._server is None:
                return  # the plan changed meanwhile; that change decides
            plan = replace(self._faults.plan, down=False, down_for=None)
            self._faults.replace_plan(plan, reseed=False)
            self._outage_timer = None
            self.apply_outage()

    # -- listening ---------------------------------------------------------------------------------------------

    def _serve(self) -> None:
        assert self._server is not None
        # stop() waits for the serving loop to notice; a short poll keeps test teardown fast at negligible idle cost.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="deepva-emulator", daemon=True
        )
        self._thread.start()
        self._listening = True

    def _stop_listening(self, server: EmulatorHTTPServer) -> None:
        if self._listening:
            server.shutdown()
            if self._thread is not None:
                self._thread.join(timeout=5)
            server.socket.close()
            self._listening = False
        server.close_connections()

    def _reopen(self, server: EmulatorHTTPServer) -> None:
        """Binds a fresh socket to the same address; SO_REUSEADDR lets it take the port straight back."""
        server.socket = socket.socket(server.address_family, server.socket_type)
        server.server_bind()
        server.server_activate()
        self._serve()

    def _running(self) -> EmulatorHTTPServer:
        if self._server is None:
            raise RuntimeError("emulator is not running; call start() first")
        return self._server

    def _running_state(self) -> EmulatorState:
        if self._state is None:
            raise RuntimeError("emulator was never started")
        return self._state
