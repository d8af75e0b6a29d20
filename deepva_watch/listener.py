"""The daemon's HTTP listeners (metrics, health and status page; the webhook receiver), served by waitress.

Anyone who can reach a port can open connections, so every listener is bounded: a fixed pool of worker threads (a
connection costs no thread while it is idle), at most ``max_connections`` open at once, a connection silent for
``idle_seconds`` is closed, and a request body over ``max_body_bytes`` is refused before it is read. What goes wrong
while serving reaches the structured log through waitress's logger (see :mod:`deepva_watch.log`). IPv6 addresses
(``[::1]:8787``) work wherever an address is accepted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from waitress.server import TcpWSGIServer, create_server

log = structlog.get_logger("deepva_watch.listener")

#: A WSGI application (PEP 3333).
App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

IDLE_SECONDS = 10
MAX_CONNECTIONS = 32
THREADS = 2


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6-address]:port`` (port 0: a free one)."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port, got {listen!r}")
    return host.strip("[]"), int(port)


class Listener:
    """One address, one WSGI application. Binds when made (so a port in use fails here), serves once started."""

    def __init__(self, listen: str, app: App, *, name: str, max_connections: int = MAX_CONNECTIONS,
                 idle_seconds: int = IDLE_SECONDS, max_body_bytes: int = 1 << 20) -> None:
        host, port = split_listen(listen)
        self.name = name
        self._map: dict[int, Any] = {}  # waitress's socket map, ours so that stopping can close every connection
        server = create_server(
            app, map=self._map, host=host, port=port, threads=THREADS, connection_limit=max_connections,
            channel_timeout=idle_seconds, cleanup_interval=max(1, idle_seconds // 2),
            max_request_body_size=max_body_bytes, ident=None, expose_tracebacks=False, asyncore_use_poll=True,
        )
        assert isinstance(server, TcpWSGIServer)  # one address: one server
        self._server = server
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens; with port 0 this is the port the system picked."""
        sock = self._server.socket
        assert sock is not None, "the listener was stopped"
        host, port = sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> Listener:
        self._thread = threading.Thread(target=self._server.run, name=f"{self.name}-http", daemon=True)
        self._thread.start()
        log.info("listening", listener=self.name, host=self.address[0], port=self.address[1])
        return self

    def stop(self) -> None:
        """Stop accepting, close every open connection, end the worker threads."""
        self._server.close()
        for dispatcher in list(self._map.values()):
            dispatcher.close()
        self._server.task_dispatcher.shutdown(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
