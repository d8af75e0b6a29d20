"""Wiring: the ledger, one FolderWatch per folder, runner threads per stage, and the service around them.

The main thread only ticks: it lets folder watches do their periodic work, pings systemd's watchdog while every worker
is alive, reports status, and applies reloads and stops that signal handlers (in ``cli``) merely requested. Nothing
heavy runs inside a signal handler.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import structlog

from deepva_watch import ledger as states
from deepva_watch import log as logging_setup
from deepva_watch.config import ApiConfig, Config, ConfigError, Secret, load_config, resolve_api_key
from deepva_watch.ledger import Ledger
from deepva_watch.pipeline import Clock, StageRunner, SystemClock, folder_key, make_services, run_in_thread
from deepva_watch.service.health import Health, ledger_write_problem
from deepva_watch.service.metrics import Metrics, MetricsServer
from deepva_watch.service.notify import Notifier, Watchdog, stale_workers, status_text, watchdog_interval
from deepva_watch.stages import PUBLISH_WORKERS, STAGES
from deepva_watch.stages.publish import CLEAN_UP_RETRY_SECONDS, sweep_clean_ups
from deepva_watch.stages.publish_process import PublisherProcess
from deepva_watch.watch.observer import ObserverFactory, start_observer
from deepva_watch.watch.supervisor import FolderWatch
from deepva_watch.webhook import WebhookReceiver, ledger_nonce_store, load_secret

log = structlog.get_logger("deepva_watch.daemon")

STOP_DEADLINE_SECONDS = 20.0
TICK_SECONDS = 0.5
STATUS_EVERY_SECONDS = 5.0
#: A worker whose step has shown no progress for this long is stuck (the longest step, a client call with all its
#: retries, stays well below it; uploads beat as bytes go out). The watchdog pings stop, and systemd restarts us.
STUCK_WORKER_SECONDS = 600.0
REFUSED_STATUSES = (401, 403)
#: The states whose next step talks to DeepVA.
API_STATES = (states.ACCEPTED, states.UPLOADED, states.SUBMITTED, states.COMPLETED, states.JOB_FAILED)


@dataclass
class Daemon:
    config: Config
    client: Any
    clock: Clock = field(default_factory=SystemClock)
    stop_event: threading.Event = field(default_factory=threading.Event)
    config_path: Path | None = None
    read_key: Callable[[ApiConfig], Secret] = resolve_api_key
    notifier: Notifier = field(default_factory=Notifier)
    log_level: str | None = None
    """The level the command line asked for, if any; the publishing process logs at the same level."""
    observer_factory: ObserverFactory = start_observer

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.config.ledger)
        self.services = make_services(self.config, self.ledger, self.client, self.clock)
        self.runners: list[StageRunner] = []
        self.threads: list[threading.Thread] = []
        self._sweeper: threading.Thread | None = None
        self.watches: dict[str, FolderWatch] = {}
        self.ready = threading.Event()
        self._reload_requested = threading.Event()
        self._next_status = 0.0
        self._key_stamp = self._key_file_stamp(self.config.api)
        self.health = Health(
            api_failure_seconds=self.config.metrics.api_failure_seconds,
            folder_statuses=self.folder_statuses,
            ledger_problem=lambda: ledger_write_problem(self.config.ledger),
            api_paused=lambda: self.services.api_gate.reason,
        )
        self.services.api_failing_for = self.health.api_failing_for
        self.metrics = Metrics(ledger_counts=self.ledger.count_by_folder_and_state, folder_statuses=self.folder_statuses)
        self.services.metrics = self.metrics
        self.watchdog = Watchdog(self.notifier, watchdog_interval())
        self.metrics_server: MetricsServer | None = None
        self.receiver: WebhookReceiver | None = None
        self.client.on_response = self._heard_from_api
        # sidecars are written by a child process with its own interpreter lock (see stages/publish_process.py); it
        # starts with the first file to publish
        self.publisher = self.services.publisher = PublisherProcess(
            self.config.api, lambda: self.client.api_key, threads=PUBLISH_WORKERS,
            log_level=self.log_level or self.config.log_level, on_call=self._heard_from_api,
        )

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        started_at = self.clock.now()
        recovered = self.ledger.recover(started_at)
        if recovered:
            log.info("recovered_in_flight", **recovered)
        for stage in STAGES:
            for index in range(max(1, stage.workers(self.config) if stage.working else 1)):
                runner = StageRunner(stage, self.services, self.stop_event, self._wake_stage_for)
                self.runners.append(runner)
                self.threads.append(run_in_thread(f"{stage.name}-{index}", runner.run_forever))
        self._sweeper = run_in_thread("clean-up", partial(self._sweep_clean_ups, started_at))
        for folder in self.config.folders:
            self._start_watch(folder)
        if self.config.metrics.listen:
            self.metrics_server = MetricsServer.from_listen(self.config.metrics.listen, self.metrics, self.health).start()
            log.info("metrics_listening", listen=self.config.metrics.listen)
        self._start_receiver(self.config)
        self.ready.set()
        self.notifier.ready(status_text(self.ledger.count_by_state()))

    def run(self) -> None:
        self.start()
        try:
            while not self.stop_event.wait(TICK_SECONDS):
                try:
                    self._tick()
                except Exception:  # the main loop is what keeps the service alive: log, never leave it
                    log.error("main_loop_error", trace=traceback.format_exc(limit=8))
        finally:
            self.shutdown()

    def _tick(self) -> None:
        for watch in list(self.watches.values()):
            watch.tick()
        if self._reload_requested.is_set():
            self._reload_requested.clear()
            self.reload()
        self._check_key_file()
        self.watchdog.tick(workers_alive=not self.stuck_workers())
        if time.monotonic() >= self._next_status:
            self.notifier.status(status_text(self.ledger.count_by_state()))
            self._next_status = time.monotonic() + STATUS_EVERY_SECONDS

    def _sweep_clean_ups(self, started_at: float) -> None:
        """Deletions a crash cut off or DeepVA refused (``delete_*_after_*``): those marked before this start at once,
        then every minute those a minute old."""
        updated_before = started_at
        while True:
            try:
                sweep_clean_ups(self.services, updated_before, stop=self.stop_event)
            except Exception:  # the ledger failed (disk full, locked): try again on the next turn
                log.error("clean_up_sweep_failed", trace=traceback.format_exc(limit=5))
            if self.stop_event.wait(CLEAN_UP_RETRY_SECONDS):
                return
            updated_before = self.clock.now() - CLEAN_UP_RETRY_SECONDS

    def request_stop(self) -> None:
        self.stop_event.set()
        for runner in self.runners:
            runner.wakeup.set()

    def request_reload(self) -> None:
        self._reload_requested.set()

    def shutdown(self) -> None:
        """Stop taking work, let steps in flight finish within a deadline, then stop the service parts.

        A step still running at the deadline (a long upload) is abandoned: its row stays in its working state and the
        next start returns it to the state before, so it is done again rather than lost.
        """
        self.notifier.stopping("stopping: finishing steps in flight")
        self.request_stop()
        for watch in self.watches.values():
            watch.stop()
        deadline = time.monotonic() + STOP_DEADLINE_SECONDS
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._sweeper is not None:
            self._sweeper.join(max(0.0, deadline - time.monotonic()))
        still_running = [thread.name for thread in self.threads if thread.is_alive()]
        self.publisher.close()
        for server in (self.receiver, self.metrics_server):
            if server is not None:
                server.stop()
        log.info("stopped", abandoned_steps=still_running)
        self.notifier.close()

    # -- health of the parts -----------------------------------------------------------------------------------------

    def folder_statuses(self) -> list[Any]:
        return [watch.status() for watch in list(self.watches.values())]

    def stuck_workers(self) -> list[str]:
        dead = [thread.name for thread in self.threads if not thread.is_alive()]
        # a worker resting until there is work (at most a second at a time) is waiting, not stuck
        beats = {thread.name: runner.heartbeat for thread, runner in zip(self.threads, self.runners, strict=True)
                 if not runner.idle}
        return dead + stale_workers(beats, time.monotonic(), STUCK_WORKER_SECONDS)

    def _heard_from_api(self, method: str, route: str, status: int | None) -> None:
        self.metrics.api_call(method, route, status)
        was_failing = self.health.api_failing_for() is not None
        self.health.api_result(status)
        if status in REFUSED_STATUSES:
            self.services.api_gate.close(f"DeepVA refused the API key (HTTP {status})")
        elif was_failing and self.health.api_failing_for() is None:
            # DeepVA answers again: files that were waiting out the outage go now, not when their backoff ends
            resumed = self.ledger.retry_now(API_STATES, self.clock.now())
            log.warning("api_recovered", files_resumed=resumed)
            for runner in self.runners:
                runner.wakeup.set()

    # -- reloading -----------------------------------------------------------------------------------------------------

    def reload(self) -> bool:
        """Apply the config file again, whole, or refuse it (with the reason logged) and keep the running one."""
        self.notifier.reloading()
        try:
            applied = self._apply(self._read_new_config())
        except ConfigError as error:
            log.error("reload_refused", reason=str(error), note="the previous configuration stays in force")
            applied = False
        except Exception as error:  # half applied at worst: folders keep being watched, the gate is opened
            log.error("reload_failed", error=repr(error)[:300], trace=traceback.format_exc(limit=8))
            self.services.api_gate.open()
            applied = False
        self.notifier.reloaded(status_text(self.ledger.count_by_state()))
        return applied

    def _read_new_config(self) -> tuple[Config, Secret]:
        if self.config_path is None:
            raise ConfigError("", "no config file to reload from")
        new = load_config(self.config_path)
        if new.ledger != self.config.ledger:
            raise ConfigError("ledger", "the ledger cannot move while the daemon runs; restart to use a new one")
        if new.api.url != self.config.api.url:
            raise ConfigError("api.url", "the API URL cannot change while the daemon runs; restart to use a new one")
        if new.metrics.listen != self.config.metrics.listen:
            raise ConfigError("metrics.listen", "the metrics address cannot change on reload; restart to use it")
        key = self.read_key(new.api)
        if new.webhook.listen:
            load_secret(new.webhook)  # a broken secret file must refuse the reload, not break the receiver
        return new, key

    def _apply(self, loaded: tuple[Config, Secret]) -> bool:
        new, key = loaded
        old = self.config
        logging_setup.register_secret(key.reveal())
        self.client.set_api_key(key.reveal())
        self.publisher.use_api(new.api)
        self.config = self.services.config = new
        self.ledger.set_folder_priorities({folder_key(folder): folder.priority for folder in new.folders})
        wanted = {folder_key(folder): folder for folder in new.folders}
        for key_name in list(self.watches):
            if key_name not in wanted or wanted[key_name] != self.watches[key_name].folder:
                self.watches.pop(key_name).stop()
        for name, folder in wanted.items():
            if name not in self.watches:
                self._start_watch(folder)
        if new.webhook != old.webhook:
            if self.receiver is not None:
                self.receiver.stop()
                self.receiver = None
            self._start_receiver(new)
        self._key_stamp = self._key_file_stamp(new.api)
        self.services.api_gate.open()
        self._wake_stage_for("settling")
        log.info("reloaded", folders=sorted(wanted))
        return True

    def _check_key_file(self) -> None:
        """A changed key file is read again at once: a refused key is fixed without a restart or a signal."""
        stamp = self._key_file_stamp(self.config.api)
        if stamp == self._key_stamp:
            return
        self._key_stamp = stamp
        try:
            key = self.read_key(self.config.api)
        except ConfigError as error:
            log.error("api_key_unreadable", reason=str(error))
            return
        logging_setup.register_secret(key.reveal())
        self.client.set_api_key(key.reveal())
        log.info("api_key_reloaded")
        self.services.api_gate.open()
        for runner in self.runners:
            runner.wakeup.set()

    @staticmethod
    def _key_file_stamp(api: ApiConfig) -> tuple[int, int] | None:
        if api.key_file is None:
            return None
        try:
            info = api.key_file.stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size

    # -- helpers -----------------------------------------------------------------------------------------------------

    def _start_watch(self, folder: Any) -> None:
        watch = FolderWatch(folder, self.ledger, self.clock, lambda: self._wake_stage_for("settling"),
                            observer_factory=self.observer_factory)
        watch.start()
        self.watches[folder_key(folder)] = watch

    def _start_receiver(self, config: Config) -> None:
        if not config.webhook.listen:
            return
        secret = load_secret(config.webhook)
        logging_setup.register_secret(secret)
        self.receiver = WebhookReceiver(
            config.webhook, secret, ledger_nonce_store(self.ledger, self.clock.now), on_job=self._job_moved
        ).start()
        log.info("webhook_listening", listen=config.webhook.listen, callback=config.webhook.callback_url)

    def _job_moved(self, job_id: str, state: str) -> None:
        """A verified webhook: only a hint that makes the job due now; the tracker asks the API as usual."""
        if self.ledger.poll_now(job_id, self.clock.now()):
            self._wake_stage_for("submitted")

    def _wake_stage_for(self, state: str, due_at: float | None = None) -> None:
        """Wake one idle worker of each stage that may now have work: one row needs one worker, and a busy worker
        looks for more by itself before it rests. Waking them all would only make the rest look and sleep again.
        A worker already woken for an earlier row and not yet running is passed over, so that a batch of rows landing
        together wakes as many workers as it has rows (the others would otherwise rest their whole second).
        A row not due before the worker would look again anyway wakes nobody."""
        woken: set[str] = set()
        for runner in self.runners:
            name = runner.stage.name
            if name in woken or not (state in runner.stage.takes or state in runner.stage.wakes_on):
                continue
            if state not in runner.stage.wakes_on and not runner.wanted_by(due_at):
                continue
            if runner.idle and runner.stage.working is not None and runner.wakeup.is_set():
                continue
            if runner.idle or runner.stage.working is None:
                runner.wakeup.set()
                woken.add(name)
