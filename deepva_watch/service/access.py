"""Who may press the status page's buttons: whoever holds the token in ``metrics.page_actions_token_file``.

The page is read-only unless that file is configured. The operator enters the token once in the page's sign-in form;
the answer is a cookie (``HttpOnly``, ``SameSite=Strict``) holding a random session id, the time it was issued and an
HMAC of both keyed with the token: never the token itself, useless to forge without it, and void as soon as the token
file changes. Every form the page shows carries a CSRF token (an HMAC of the session id for another purpose), and
every POST must also come from the page itself: its ``Origin`` (or, without one, its ``Referer``) must name the host
the request was sent to. A browser on another site can therefore neither send a button's request with the cookie
(SameSite) nor make one that passes (no CSRF token, a foreign Origin). Sign-in attempts are throttled.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog

from deepva_watch import log as logging_setup
from deepva_watch.config import ConfigError, read_secret_file

log = structlog.get_logger("deepva_watch.page")

KEY_PATH = "metrics.page_actions_token_file"
TOKEN_MIN_CHARS = 16
SESSION_SECONDS = 12 * 3600
COOKIE = "deepva_watch_session"
#: Wrong tokens accepted per minute, from anyone, before sign-in refuses to look for the rest of that minute.
SIGN_IN_FAILURES_PER_MINUTE = 10


def read_token(path: Path) -> bytes:
    """The token in ``path``; raises :class:`ConfigError` (for ``metrics.page_actions_token_file``), never showing it."""
    token = read_secret_file(path, KEY_PATH)
    if len(token.reveal()) < TOKEN_MIN_CHARS:
        raise ConfigError(KEY_PATH, f"{str(path)!r} holds fewer than {TOKEN_MIN_CHARS} characters: use a long random "
                                    "token (openssl rand -hex 24)")
    logging_setup.register_secret(token.reveal())
    return token.reveal().encode("utf-8")


class TokenFile:
    """The token, read again whenever the configured file (or which file is configured) changes; None: actions off.

    ``path`` is asked at every use, so a reload that sets, changes or removes ``page_actions_token_file`` is in force
    at once, and so is a new token written into the same file.
    """

    def __init__(self, path: Callable[[], Path | None]) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[Any, ...] | None = None
        self._token: bytes | None = None

    def check(self) -> None:
        """Read the configured token now; raises :class:`ConfigError` if it cannot be used (at the daemon's start)."""
        path = self.path()
        if path is not None:
            read_token(path)
            self.current()  # and warn now if others may read it

    def current(self) -> bytes | None:
        path = self.path()
        if path is None:
            return None
        try:
            info = path.stat()
            stamp: tuple[Any, ...] = (str(path), info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size, info.st_mode)
        except OSError:
            stamp = (str(path), None)
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._token = read_token(path)
                except ConfigError as error:
                    self._token = None
                    log.error("page_token_unusable", reason=str(error), note="the page's buttons are off until it is fixed")
                else:
                    mode = stamp[5] & 0o777 if len(stamp) > 2 else 0
                    if mode & 0o077:
                        log.warning("insecure_permissions", note=f"{KEY_PATH} {str(path)!r} is accessible by other "
                                                                 f"users (mode {mode:04o}): chmod 600")
            return self._token


@dataclass(frozen=True)
class Session:
    issued: int
    nonce: str
    key: bytes

    def mac(self, purpose: str) -> str:
        return hmac.new(self.key, f"{purpose}\n{self.issued}\n{self.nonce}".encode(), hashlib.sha256).hexdigest()

    @property
    def cookie(self) -> str:
        return f"{self.issued}.{self.nonce}.{self.mac('session')}"

    @property
    def csrf(self) -> str:
        """What every form of this session carries, checked on every POST."""
        return self.mac("csrf")

    def csrf_ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


class Access:
    def __init__(self, token: TokenFile, clock: Callable[[], float] = time.time) -> None:
        self.token = token
        self.clock = clock
        self._failures: deque[float] = deque()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.token.current() is not None

    def sign_in(self, given: str) -> Session | None:
        """A new session if ``given`` is the token; None if not, or if too many wrong tokens came this minute."""
        token = self.token.current()
        if token is None or self.throttled():
            return None
        # compared as digests: equal lengths, so the time taken tells nothing of the token's length either
        if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(token).digest()):
            with self._lock:
                self._failures.append(self.clock())
            return None
        return Session(int(self.clock()), secrets.token_urlsafe(18), token)

    def throttled(self) -> bool:
        now = self.clock()
        with self._lock:
            while self._failures and self._failures[0] < now - 60:
                self._failures.popleft()
            return len(self._failures) >= SIGN_IN_FAILURES_PER_MINUTE

    def session(self, environ: Mapping[str, Any]) -> Session | None:
        """The valid session the request's cookie names, or None."""
        token = self.token.current()
        if token is None:
            return None
        # read by hand: the standard library's cookie parser gives up on the rest of the header at the first cookie
        # it does not like, and other programs on this host may set cookies of any shape (cookies ignore the port)
        for part in str(environ.get("HTTP_COOKIE", "")).split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and (session := self._valid(value.strip('"'), token)) is not None:
                return session
        return None

    def _valid(self, value: str, token: bytes) -> Session | None:
        issued, _, rest = value.partition(".")
        nonce, _, mac = rest.partition(".")
        if not issued.isdigit() or len(issued) > 12 or not nonce or not mac:
            return None
        session = Session(int(issued), nonce, token)
        if not hmac.compare_digest(mac.encode(), session.mac("session").encode()):
            return None
        if not 0 <= self.clock() - session.issued <= SESSION_SECONDS:
            return None
        return session


def set_cookie(session: Session) -> str:
    return f"{COOKIE}={session.cookie}; Max-Age={SESSION_SECONDS}; Path=/; HttpOnly; SameSite=Strict"


def clear_cookie() -> str:
    return f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"


def same_origin(environ: Mapping[str, Any]) -> bool:
    """Whether a POST comes from a page of this server: its Origin, or without one its Referer, names the host the
    request was sent to. The scheme is not compared, so the page also works behind a TLS-terminating proxy."""
    host = str(environ.get("HTTP_HOST", "")).lower()
    if not host:
        return False
    source = environ.get("HTTP_ORIGIN") or environ.get("HTTP_REFERER")
    if not source or source == "null":
        return False
    try:
        parts = urlsplit(str(source))
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host
