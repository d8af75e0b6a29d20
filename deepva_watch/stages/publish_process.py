"""Writing sidecars in a process of its own, fed by the daemon through a pipe.

Every stage runs on a thread of the daemon, and they all share one interpreter lock; publishing is the dearest step (the
results fetched and parsed, XMP and JSON rendered, two files written and synced): with a backlog, about 40 % of the
time the lock was held, publishing held it. Here it runs in a child process with its own lock and its own threads, on the
other core. The daemon keeps everything that decides (the ledger, the claim, the commit, the job cache, the API gate,
metrics): the child only fetches results and writes files, and reports back what it wrote, what went wrong and every
API exchange it had, so metrics, health and a refused key are handled as if the daemon had made the calls itself.

One child with several threads rather than several children: deciding which media file owns a stem XMP and writing it
must not interleave for two files of the same clip, and that is a thread lock inside :mod:`deepva_watch.sidecars`.

If the child dies (killed, or a crash in a C library), the steps waiting on it end as a retry and the next request
starts a new child; nothing is lost, since the ledger row is committed only when the daemon has the child's answer.
"""

from __future__ import annotations

import faulthandler
import itertools
import multiprocessing
import signal
import threading
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable

import structlog

from deepva_watch.config import ApiConfig
from deepva_watch.deepva.errors import DeepVAError
from deepva_watch.deepva.models import Job
from deepva_watch.media import MediaKind
from deepva_watch.sidecars import Provenance, SidecarSettings, UnsafeSidecarPath, WrittenSidecars

log = structlog.get_logger("deepva_watch.publish")

#: How long the daemon waits for the child to finish its steps in flight when it stops.
CLOSE_SECONDS = 10.0

ApiCall = tuple[str, str, "int | None"]

#: Errors that are the file's or the API's, not a bug: the daemon turns them into outcomes without a trace in the log.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (DeepVAError, OSError, UnsafeSidecarPath)


@dataclass(frozen=True)
class SidecarJob:
    """Everything writing one file's sidecars needs; the same value drives the in-process path and the child."""

    media_path: Path
    job: Job | None
    """The job as the tracker last saw it; None: fetch it (after a restart the job cache is empty)."""
    job_id: str
    completed: bool
    errors: tuple[str, ...]
    mime: str
    kind: MediaKind
    watch_root: Path
    settings: SidecarSettings
    provenance: Provenance


@dataclass
class _Reply:
    written: WrittenSidecars | None = None
    error: BaseException | None = None
    calls: list[ApiCall] = field(default_factory=list)


class PublisherGone(RuntimeError):
    """The publishing process ended before it answered: the step is tried again, by a new process."""


class _Child:
    """One publishing process, the pipe to it and the steps waiting on its answers."""

    def __init__(self, api: ApiConfig, threads: int, log_level: str) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process full of threads and sockets
        self.conn, theirs = context.Pipe(duplex=True)
        self.process = context.Process(target=serve, args=(theirs, api, threads, log_level),
                                       name="deepva-watch-publish", daemon=True)
        self.process.start()
        theirs.close()
        self.waiting: dict[int, Future[_Reply]] = {}
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.ended = False
        self.retiring = False
        threading.Thread(target=self._read_replies, name="publish-replies", daemon=True).start()

    def ask(self, number: int, key: str, job: SidecarJob) -> Future[_Reply]:
        future: Future[_Reply] = Future()
        with self.lock:
            if self.ended:
                raise PublisherGone("the publishing process has ended")
            self.waiting[number] = future
        try:
            with self.send_lock:
                self.conn.send((number, key, job))
        except (OSError, ValueError) as error:  # the pipe broke: the process died; the reader fails the others
            with self.lock:
                self.waiting.pop(number, None)
            raise PublisherGone(f"the publishing process could not be reached: {error}") from None
        return future

    def retire(self) -> None:
        """No new work: finish the steps in flight, then exit (a reload changed the API settings; stopping)."""
        self.retiring = True
        try:
            with self.send_lock:
                self.conn.send(None)
        except (OSError, ValueError):
            pass

    def _read_replies(self) -> None:
        while True:
            try:
                number, reply = self.conn.recv()
            except (EOFError, OSError):
                break
            with self.lock:
                future = self.waiting.pop(number, None)
            if future is not None:
                future.set_result(reply)
        self.process.join(1.0)
        code = self.process.exitcode
        with self.lock:
            self.ended = True
            orphans = list(self.waiting.values())
            self.waiting.clear()
        self.conn.close()
        if orphans or not self.retiring:
            log.error("publisher_ended", pid=self.process.pid, exit_code=code, steps_cut_off=len(orphans),
                      note="those steps are tried again, by a new process")
        for future in orphans:
            future.set_exception(PublisherGone(f"the publishing process ended (exit code {code})"))


class PendingWrite:
    """A write handed to the child; :meth:`result` waits for its answer. Several in flight keep the child busy while
    the daemon's publishing workers wait for their turns at the interpreter lock they share with every other stage."""

    def __init__(self, future: Future[_Reply], on_call: Callable[[str, str, int | None], None] | None) -> None:
        self._future = future
        self._on_call = on_call

    def result(self) -> WrittenSidecars:
        """What the child wrote; raises what writing raised there, or :class:`PublisherGone`."""
        reply = self._future.result()
        if self._on_call is not None:
            for method, route, status in reply.calls:
                self._on_call(method, route, status)
        if reply.error is not None:
            raise reply.error
        assert reply.written is not None
        return reply.written


class PublisherProcess:
    """The daemon's side: sends :class:`SidecarJob` values to the child and waits for the answers, from any thread."""

    def __init__(self, api: ApiConfig, api_key: Callable[[], str], *, threads: int, log_level: str,
                 on_call: Callable[[str, str, int | None], None] | None = None) -> None:
        self._api = api
        self._api_key = api_key
        self._threads = threads
        self._log_level = log_level
        self._on_call = on_call
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._child: _Child | None = None
        self._closed = False

    def submit(self, job: SidecarJob) -> PendingWrite:
        """Hand one file's sidecars to the child and return at once; raises :class:`PublisherGone` if it cannot."""
        with self._lock:
            if self._closed:
                raise PublisherGone("the daemon is stopping")
            if self._child is None or self._child.ended:
                self._child = _Child(self._api, self._threads, self._log_level)
                log.info("publisher_started", pid=self._child.process.pid, threads=self._threads)
            child, number = self._child, next(self._numbers)
        return PendingWrite(child.ask(number, self._api_key(), job), self._on_call)

    def use_api(self, api: ApiConfig) -> None:
        """New API settings (a reload): the next step starts a process that uses them; this one finishes its steps."""
        with self._lock:
            if api == self._api:
                return
            self._api = api
            child, self._child = self._child, None
        if child is not None:
            child.retire()

    def close(self) -> None:
        """Let the steps in flight finish (up to ``CLOSE_SECONDS``), then end the process."""
        with self._lock:
            self._closed = True
            child, self._child = self._child, None
        if child is None:
            return
        child.retire()
        child.process.join(CLOSE_SECONDS)
        if child.process.is_alive():
            child.process.kill()
            child.process.join(CLOSE_SECONDS)

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.process.pid if child is not None and not child.ended else None


# -- the child ---------------------------------------------------------------------------------------------------------


def serve(conn: Connection, api: ApiConfig, threads: int, log_level: str) -> None:
    """The child's main: answer requests on ``conn`` with ``threads`` workers until told to stop or the pipe closes
    (the daemon died: nothing is left to answer to)."""
    from deepva_watch import log as logging_setup
    from deepva_watch.deepva import client_for
    from deepva_watch.stages.publish import write_sidecars

    # A stop (systemd signals the whole control group; Ctrl-C the whole process group) is the daemon's to handle: it
    # lets the steps in flight here finish, then closes the pipe, which ends this process.
    # So is a reload (SIGHUP) and the daemon's stack dump (SIGUSR1), should they reach every process of the service:
    # two dumps written at once into one journal stream would interleave line by line.
    for theirs in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(theirs, signal.SIG_IGN)
    # As in the daemon, a crash in a C library leaves the stacks in the log; SIGUSR2 dumps them on demand.
    faulthandler.enable(all_threads=True)
    faulthandler.register(signal.SIGUSR2, all_threads=True, chain=False)
    logging_setup.configure(log_level)
    calls = threading.local()

    def heard(method: str, route: str, status: int | None) -> None:
        calls.log.append((method, route, status))

    client = client_for(api, "", on_response=heard)
    key_lock = threading.Lock()
    current_key = [""]
    send_lock = threading.Lock()

    def handle(number: int, key: str, job: SidecarJob) -> None:
        with key_lock:
            if key != current_key[0]:
                logging_setup.register_secret(key)
                client.set_api_key(key)
                current_key[0] = key
        calls.log = []
        reply = _Reply(calls=calls.log)
        with structlog.contextvars.bound_contextvars(asset_id=job.provenance.asset_id, path=str(job.media_path),
                                                     job_id=job.job_id):
            try:
                reply.written = write_sidecars(client, job)
            except Exception as error:  # the daemon decides what an error means, as it does for its own steps
                reply.error = error
                if not isinstance(error, EXPECTED_ERRORS):
                    log.error("publish_step_crashed", error=repr(error)[:500], trace=traceback.format_exc(limit=8))
        try:
            with send_lock:
                conn.send((number, reply))
        except (OSError, ValueError):
            return  # the daemon is gone
        except Exception as error:  # an error that cannot be pickled must still end the daemon's wait
            unpicklable = reply.error if reply.error is not None else error
            with send_lock:
                conn.send((number, _Reply(error=RuntimeError(f"{type(unpicklable).__name__}: {unpicklable}"[:500]),
                                          calls=reply.calls)))

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="publish") as pool:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            if message is None:
                break
            pool.submit(handle, *message)
    client.close()
