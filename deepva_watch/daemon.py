"""Wiring: the ledger, one FolderWatch per folder, runner threads per stage, and the service around them.

The main thread only ticks: it lets folder watches do their periodic work, pings systemd's watchdog while every worker
is alive, reports status, and applies reloads and stops that signal handlers (in ``cli``) merely requested. Nothing
heavy runs inside a signal handler.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import structlog

from deepva_watch import log as logging_setup
from deepva_watch.config import (
    ApiConfig,
    Config,
    ConfigError,
    FolderConfig,
    Secret,
    load_config,
    resolve_api_key,
    resolve_ledger_password,
)
from deepva_watch.deepva import DeepVAClient
from deepva_watch.deepva.webhook import NONCE_SETTING, WebhookReceiver, load_secret
from deepva_watch.flow import Clock, Services, SystemClock, folder_key
from deepva_watch.flow.budget import budget_state
from deepva_watch.flow.runner import StageRunner, run_in_thread, wake
from deepva_watch.flow.transfers import Transfers
from deepva_watch.ledger import open_ledger
from deepva_watch.service.health import Health, ledger_write_problem
from deepva_watch.listener import Listener
from deepva_watch.service.metrics import Metrics
from deepva_watch.service.access import Access, TokenFile
from deepva_watch.service.page import StatusPage
from deepva_watch.service.status import Sources as PageSources
from deepva_watch.service.web import web_app
from deepva_watch.service.notify import Notifier, Watchdog, stale_workers, status_text, watchdog_interval
from deepva_watch.stages import STAGES
from deepva_watch.stages.clean_up import CleanUp
from deepva_watch.states import AT_DEEPVA, State
from deepva_watch.watch.observer import ObserverFactory, start_observer
from deepva_watch.watch.retention import Retention
from deepva_watch.watch.supervisor import FolderStatus, FolderWatch

log = structlog.get_logger("deepva_watch.daemon")

STOP_DEADLINE_SECONDS = 20.0
TICK_SECONDS = 0.5
STATUS_EVERY_SECONDS = 5.0
#: A worker whose step has shown no progress for this long is stuck (the longest step, a client call with all its
#: retries, stays well below it; an upload shows progress as its bytes go out). The watchdog pings stop, and
#: systemd restarts us.
STUCK_WORKER_SECONDS = 600.0
REFUSED_STATUSES = (401, 403)
#: The states whose next step talks to DeepVA: when it answers again after an outage they are due at once.
API_STATES = (State.ACCEPTED, State.UPLOADED, *AT_DEEPVA, State.COMPLETED, State.JOB_FAILED)
#: Overdue jobs are counted up to this many (for health and the metric).
OVERDUE_COUNTED = 1000
#: Requests to the metrics listener carry at most the status page's small forms.
PAGE_BODY_BYTES = 16 * 1024


@dataclass
class Daemon:
    config: Config
    client: DeepVAClient
    clock: Clock = field(default_factory=SystemClock)
    stop_event: threading.Event = field(default_factory=threading.Event)
    config_path: Path | None = None
    read_key: Callable[[ApiConfig], Secret] = resolve_api_key
    notifier: Notifier = field(default_factory=Notifier)
    observer_factory: ObserverFactory = start_observer

    def __post_init__(self) -> None:
        password = resolve_ledger_password(self.config) if not isinstance(self.config.ledger, Path) else None
        if password is not None:
            logging_setup.register_secret(password.reveal())
        self.ledger = open_ledger(self.config.ledger, password=password.reveal() if password else None, exclusive=True)
        host = socket.gethostname()
        self.node = self.config.node_name or host
        self.ledger.join(self.node, host, os.getpid(), self.clock.now(), self.config.node_lease_seconds)
        self._next_beat = 0.0
        self.watches: dict[str, FolderWatch] = {}
        self.health = Health(
            api_failure_seconds=self.config.metrics.api_failure_seconds,
            folder_statuses=self.folder_statuses,
            ledger_problem=self._ledger_problem,
            api_paused=lambda: self.services.gate.reason,
            ledger_warnings=(self._overdue_warning, self._budget_warning),
        )
        self.metrics = Metrics(ledger_counts=self.ledger.count_by_folder_and_state, folder_statuses=self.folder_statuses,
                               overdue_jobs=self._overdue_count,
                               budget=lambda: budget_state(self.config.budget, self.ledger, self.clock.now()),
                               nodes=self.ledger.nodes, node=self.node)
        self.services = Services(self.config, self.ledger, self.client, self.clock, telemetry=self.metrics,
                                 transfers=Transfers(on_bytes=self.metrics.uploaded_bytes),
                                 api_failing_for=self.health.api_failing_for)
        self.runners = [StageRunner(stage, self.services, self.stop_event, self._wake_stage_for)
                        for stage in STAGES
                        for _ in range(max(1, stage.workers(self.config) if stage.working else 1))]
        self.threads: list[threading.Thread] = []
        self._runner_of: dict[str, StageRunner] = {}
        self.clean_up = CleanUp(self.services, self.stop_event)
        self.ready = threading.Event()
        self._reload_requested = threading.Event()
        self._next_status = 0.0
        self._key_stamp = self._key_file_stamp(self.config.api)
        self.watchdog = Watchdog(self.notifier, watchdog_interval())
        self.metrics_server: Listener | None = None
        self.receiver: WebhookReceiver | None = None
        self.client.on_response = self._heard_from_api

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        recovered = self.ledger.recover(self.clock.now())
        if recovered:
            log.info("recovered_in_flight", **recovered)
        counts: dict[str, int] = {}
        for runner in self.runners:
            index = counts[runner.stage.name] = counts.get(runner.stage.name, -1) + 1
            thread = run_in_thread(f"{runner.stage.name}-{index}", runner.run_forever)
            self.threads.append(thread)
            self._runner_of[thread.name] = runner
        self.threads.append(run_in_thread("clean-up", self.clean_up.run_forever))
        self.threads.append(run_in_thread("retention", Retention(self.services, self.stop_event).run_forever))
        for folder in self.config.folders:
            self._start_watch(folder)
        if self.config.metrics.listen:
            app = web_app(self.metrics, self.health, self._page(), ledger=self.ledger,
                          roots=lambda: {folder_key(folder): folder.path.absolute() for folder in self.config.folders})
            self.metrics_server = Listener(self.config.metrics.listen, app, name="metrics",
                                           max_body_bytes=PAGE_BODY_BYTES).start()
        if self.config.webhook.listen:
            secret = load_secret(self.config.webhook)
            self._swap_receiver(self.config, secret, self._receiver(self.config, secret))
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
        self._check_ledger()
        if time.monotonic() >= self._next_beat:
            self._beat()
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

    def request_stop(self) -> None:
        self.stop_event.set()
        for runner in self.runners:
            runner.wakeup.set()
        self.clean_up.wakeup.set()

    def request_reload(self) -> None:
        self._reload_requested.set()

    def shutdown(self) -> None:
        """Stop taking work, let steps in flight finish within a deadline, then stop the service parts.

        A step still running at the deadline (a long upload) is abandoned: its row stays in its working state and the
        next start returns it home, so it is done again rather than lost.
        """
        self.notifier.stopping("stopping: finishing steps in flight")
        self.request_stop()
        for watch in self.watches.values():
            watch.stop()
        deadline = time.monotonic() + STOP_DEADLINE_SECONDS
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        still_running = [thread.name for thread in self.threads if thread.is_alive()]
        for server in (self.receiver, self.metrics_server):
            if server is not None:
                server.stop()
        log.info("stopped", abandoned_steps=still_running)
        try:
            self.ledger.leave(self.clock.now())
        except Exception as error:  # the database is down: the others take over once the lease runs out
            log.warning("leave_failed", reason=str(error)[:300])
        self.ledger.close()
        self.notifier.close()

    def _page(self) -> StatusPage:
        """The status page, reading everything at request time (a reload's config and folders show at once); its
        actions token is read now, so an unusable one stops the start with a config error."""
        token = TokenFile(lambda: self.config.metrics.page_actions_token_file)
        token.check()
        sources = PageSources(ledger=self.ledger, config=lambda: self.config, folders=self.folder_statuses,
                              uploads=self.services.transfers.running, health=self.health,
                              requeued=self._wake_stage_for, clock=self.clock.now, node=self.node)
        return StatusPage(sources, Access(token))

    # -- health of the parts -----------------------------------------------------------------------------------------

    def folder_statuses(self) -> list[FolderStatus]:
        return [watch.status() for watch in list(self.watches.values())]

    def stuck_workers(self) -> list[str]:
        dead = [thread.name for thread in self.threads if not thread.is_alive()]
        beats = {}
        for name, runner in self._runner_of.items():
            if runner.idle:  # resting until there is work (at most a second at a time) is waiting, not stuck
                continue
            current = runner.current
            moved = self.services.transfers.moved_at(current.asset_id) if current is not None else None
            beats[name] = max(runner.heartbeat, moved or 0.0)
        return dead + stale_workers(beats, time.monotonic(), STUCK_WORKER_SECONDS)

    def _overdue_count(self) -> int:
        return self.ledger.count_overdue_jobs(self.clock.now() - self.config.overdue_job_seconds, OVERDUE_COUNTED)

    def _overdue_warning(self) -> str | None:
        count = self._overdue_count()
        listed = self.ledger.overdue_jobs(self.clock.now() - self.config.overdue_job_seconds, 1) if count else []
        if not listed:  # none, or the only one ended between the two reads
            return None
        oldest = listed[0]
        hours = (self.clock.now() - (oldest.submitted_at or 0.0)) / 3600
        return (f"{count} DeepVA job(s) running longer than {self.config.overdue_job_seconds / 3600:g} h "
                f"(oldest: {oldest.folder}/{oldest.relpath}, job {oldest.job_id}, {hours:.1f} h)")

    def _budget_warning(self) -> str | None:
        state = budget_state(self.config.budget, self.ledger, self.clock.now())
        return state.describe() if state is not None and state.reached else None

    def _ledger_problem(self) -> str | None:
        if problem := self.services.halted or self.ledger.problem() or self.ledger.outage():
            return problem
        return ledger_write_problem(self.config.ledger) if isinstance(self.config.ledger, Path) else None

    def _beat(self) -> None:
        """The node's heartbeat (every third of its lease): it keeps what it holds, and takes over the rows of nodes
        that stopped beating."""
        self._next_beat = time.monotonic() + self.config.node_lease_seconds / 3
        now = self.clock.now()
        try:
            self.ledger.heartbeat(now)
            taken = self.ledger.take_over(now)
        except Exception as error:  # the database does not answer: health says so; the next beat tries again
            log.warning("heartbeat_failed", reason=str(error)[:300])
            return
        if taken:
            log.warning("took_over", node=self.node, **taken, note="rows of a node that stopped beating")
            for runner in self.runners:
                runner.wakeup.set()

    def _check_ledger(self) -> None:
        """A ledger removed or replaced under us can no longer say what was done: every stage stops at once, health
        turns red, and only a restart (on a ledger the operator chose) resumes."""
        if self.services.halted is None and (problem := self.ledger.problem()) is not None:
            self.services.halted = problem
            log.error("ledger_lost", reason=problem, note="all work stopped; restore the ledger and restart")

    def _heard_from_api(self, method: str, route: str, status: int | None) -> None:
        self.metrics.api_call(method, route, status)
        was_failing = self.health.api_failing_for() is not None
        self.health.api_result(status)
        if status in REFUSED_STATUSES:
            self.services.gate.close(f"DeepVA refused the API key (HTTP {status})")
        elif was_failing and self.health.api_failing_for() is None:
            # DeepVA answers again: files that were waiting out the outage go now, not when their backoff ends
            resumed = self.ledger.retry_now(API_STATES, self.clock.now())
            log.warning("api_recovered", files_resumed=resumed)
            for runner in self.runners:
                runner.wakeup.set()

    # -- reloading ---------------------------------------------------------------------------------------------------

    def reload(self) -> bool:
        """Apply the config file again, whole, or refuse it (with the reason logged) and keep the running one.

        Everything that can fail is done first (reading the config, the key and the webhook secret, binding a new
        webhook address); only then is anything changed, so a refused reload leaves the daemon exactly as it was.
        """
        self.notifier.reloading()
        try:
            applied = self._apply(*self._prepare())
        except ConfigError as error:
            log.error("reload_refused", reason=str(error), note="the previous configuration stays in force")
            applied = False
        except Exception as error:  # a bug while applying: folders keep being watched, the gate is opened
            log.error("reload_failed", error=repr(error)[:300], trace=traceback.format_exc(limit=8))
            self.services.gate.open()
            applied = False
        self.notifier.reloaded(status_text(self.ledger.count_by_state()))
        return applied

    def _prepare(self) -> tuple[Config, Secret, Secret | None, WebhookReceiver | None]:
        """The new config, API key and webhook secret, and a receiver already bound when the address changes."""
        if self.config_path is None:
            raise ConfigError("", "no config file to reload from")
        new = load_config(self.config_path)
        if new.ledger != self.config.ledger:
            raise ConfigError("ledger", "the ledger cannot move while the daemon runs; restart to use a new one")
        if (new.node_name, new.node_lease_seconds) != (self.config.node_name, self.config.node_lease_seconds):
            raise ConfigError("node_name", "the node's name and lease cannot change while it runs; restart to use them")
        if new.api.url != self.config.api.url:
            raise ConfigError("api.url", "the API URL cannot change while the daemon runs; restart to use a new one")
        if new.metrics.listen != self.config.metrics.listen:
            raise ConfigError("metrics.listen", "the metrics address cannot change on reload; restart to use it")
        key = self.read_key(new.api)
        secret = load_secret(new.webhook) if new.webhook.listen else None  # read again on every reload
        receiver = None
        if secret is not None and (self.receiver is None or self.receiver.listen != new.webhook.listen):
            try:
                receiver = self._receiver(new, secret)  # bound now: a taken port refuses the reload
            except OSError as error:
                raise ConfigError("webhook.listen", f"cannot listen on {new.webhook.listen}: "
                                  f"{error.strerror or error}") from None
        return new, key, secret, receiver

    def _apply(self, new: Config, key: Secret, secret: Secret | None, receiver: WebhookReceiver | None) -> bool:
        if new.budget != self.config.budget:  # files waiting for tomorrow may go now (or wait for the new cap)
            self.ledger.retry_now((State.ACCEPTED, State.UPLOADED), self.clock.now())
        logging_setup.register_secret(key.reveal())
        self.client.set_api_key(key.reveal())
        self.config = new
        self.services.use(new)
        wanted = {folder_key(folder): folder for folder in new.folders}
        for name in list(self.watches):
            if name not in wanted or wanted[name] != self.watches[name].folder:
                self.watches.pop(name).stop()
        for name, folder in wanted.items():
            if name not in self.watches:
                self._start_watch(folder)
        self._swap_receiver(new, secret, receiver)
        self._key_stamp = self._key_file_stamp(new.api)
        self.services.gate.open()
        for runner in self.runners:
            runner.wakeup.set()
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
        self.services.gate.open()
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

    def _start_watch(self, folder: FolderConfig) -> None:
        watch = FolderWatch(folder, self.ledger, self.clock, lambda: self._wake_stage_for(State.SETTLING),
                            observer_factory=self.observer_factory)
        watch.start()
        self.watches[folder_key(folder)] = watch

    def _receiver(self, config: Config, secret: Secret) -> WebhookReceiver:
        """A receiver bound to ``webhook.listen`` (not serving yet)."""
        logging_setup.register_secret(secret.reveal())
        return WebhookReceiver(
            config.webhook, secret.reveal(),
            lambda nonce: self.ledger.advance_setting(NONCE_SETTING, nonce, self.clock.now()),
            on_job=self._job_moved,
        )

    def _swap_receiver(self, config: Config, secret: Secret | None, bound: WebhookReceiver | None) -> None:
        """The new receiver serves before the old one stops; on the same address the running one takes the new
        settings and secret."""
        old = self.receiver
        if bound is not None:
            self.receiver = bound.start()
            log.info("webhook_listening", listen=config.webhook.listen, callback=config.webhook.callback_url)
        elif secret is not None and old is not None:
            logging_setup.register_secret(secret.reveal())
            old.use(config.webhook, secret.reveal())
            return
        else:
            self.receiver = None
        if old is not None:
            old.stop()

    def _job_moved(self, job_id: str, state: str) -> None:
        """A verified webhook: only a hint that makes the job due now; the tracker asks the API as usual."""
        if self.ledger.poll_now(job_id, self.clock.now()):
            self._wake_stage_for(State.SUBMITTED)

    def _wake_stage_for(self, state: State, due_at: float | None = None) -> None:
        if state == State.PUBLISHED:
            self.clean_up.wakeup.set()
        wake(self.runners, state, due_at)
