"""The status page on ``metrics.listen``: plain server-rendered HTML (jinja2, every value escaped), no script, no
external asset (the server may have no internet), reloading itself with a meta refresh.

========================  ====  =====================================================================================
``/``                     GET   folders and their watch, files per state, backlog, uploads, newest files, failures
``/status.json``          GET   the same as JSON (``deepva-watch status`` reads the uploads from it)
``/search?q=TEXT``        GET   files whose path holds TEXT, ignoring case (at most :data:`.status.SEARCH_LIMIT`)
``/file/ASSET_ID``        GET   the file's story: every version, every step (as ``deepva-watch show``)
``/sign-in``              GET   the form that takes the actions token; POST: check it, set the session cookie
``/sign-out``             POST  end the session
``/file/ASSET_ID/retry``  POST  ``deepva-watch retry`` for that file; ``/reprocess``: ``deepva-watch reprocess``
========================  ====  =====================================================================================

Read-only unless ``metrics.page_actions_token_file`` is set; then the buttons need a session, a CSRF token and a
request from the page itself (see :mod:`.access`), and they change the ledger exactly as the commands do
(:mod:`deepva_watch.flow.requeue`).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import structlog
from jinja2 import Environment, PackageLoader, StrictUndefined

from deepva_watch.flow.requeue import Requeued, Target, reprocess_target, requeue, retry_target
from deepva_watch.service.access import Access, Session, clear_cookie, same_origin, set_cookie
from deepva_watch.service.status import ASSET_ID, Sources, asset_json, human_size, overview, search, story
from deepva_watch.states import State

log = structlog.get_logger("deepva_watch.page")

#: A form of the page is a few short fields; anything larger is refused unread (the listener caps bodies too).
FORM_BYTES = 4096
#: The newest files listed on the front page.
NEWEST_FILES = 15
ACTIONS = {"retry": retry_target, "reprocess": reprocess_target}
HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Response:
    status: HTTPStatus
    body: bytes
    content_type: str = HTML
    headers: tuple[tuple[str, str], ...] = field(default=())


class FormError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _size(count: float | None) -> str:
    return "—" if count is None else human_size(count)


def _when(iso: str | None) -> str:
    """An ISO time in the server's local time, as the journal shows it."""
    if not iso:
        return "—"
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _environment() -> Environment:
    environment = Environment(loader=PackageLoader("deepva_watch.service", "templates"), autoescape=True,
                              undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(age=_age, size=_size, when=_when)
    return environment


class StatusPage:
    def __init__(self, sources: Sources, access: Access | None = None) -> None:
        self.sources = sources
        self.access = access
        self.templates = _environment()
        self.host = socket.gethostname()
        self._searching = threading.Lock()

    def handle(self, environ: Mapping[str, Any]) -> Response | None:
        """The page's answer, or None when the path is not the page's (or the page is off)."""
        if not self.sources.config().metrics.page:
            return None
        method = str(environ.get("REQUEST_METHOD", "GET"))
        path = str(environ.get("PATH_INFO", "/"))
        parts = path.strip("/").split("/")
        if path in ("/", "/status.json", "/search") or (len(parts) == 2 and parts[0] == "file"):
            if method not in ("GET", "HEAD"):
                return _text(HTTPStatus.METHOD_NOT_ALLOWED, "GET only")
            query = parse_qs(str(environ.get("QUERY_STRING", "")), max_num_fields=8)
            if path == "/":
                return self._front(environ)
            if path == "/status.json":
                return Response(HTTPStatus.OK, json.dumps(overview(self.sources), ensure_ascii=False).encode() + b"\n",
                                "application/json")
            if path == "/search":
                return self._search(environ, (query.get("q") or [""])[0])
            return self._story(environ, parts[1])
        if path == "/sign-in":
            return self._sign_in(environ, method)
        if path == "/sign-out":
            return self._sign_out(environ, method)
        if len(parts) == 3 and parts[0] == "file" and parts[2] in ACTIONS:
            if method != "POST":
                return _text(HTTPStatus.METHOD_NOT_ALLOWED, "POST only")
            return self._act(environ, parts[1], parts[2])
        return None

    # -- views ---------------------------------------------------------------------------------------------------------

    def _render(self, template: str, environ: Mapping[str, Any], status: HTTPStatus = HTTPStatus.OK,
                **context: Any) -> Response:
        session = self.access.session(environ) if self.access is not None else None
        context.setdefault("notice", None)
        context.setdefault("query", "")
        context.setdefault("refresh", None)
        context.setdefault("refresh_url", None)
        if "health" not in context:
            context["health"] = self.sources.health.check().as_json()
        page = self.templates.get_template(template).render(
            host=self.host, session=session,
            actions_enabled=self.access is not None and self.access.enabled,
            many_folders=len(self.sources.config().folders) > 1, **context)
        return Response(status, page.encode())

    def _front(self, environ: Mapping[str, Any]) -> Response:
        data = overview(self.sources)
        now = self.sources.clock()
        newest = [asset_json(asset, now) for asset in self.sources.ledger.query(limit=NEWEST_FILES)]
        return self._render("status.html", environ, data=data, newest=newest,
                            refresh=_seconds(data["refresh_seconds"]), health=data["health"])

    def _search(self, environ: Mapping[str, Any], text: str) -> Response:
        # a search reads every folder's path list: one at a time, so the listener's other thread stays free for
        # /metrics and /healthz, and memory holds one list at most
        if not self._searching.acquire(blocking=False):
            return self._message(environ, HTTPStatus.TOO_MANY_REQUESTS, "Busy", "Another search is running; try "
                                 "again in a moment.")
        try:
            found = search(self.sources, text)
        finally:
            self._searching.release()
        return self._render("search.html", environ, found=found, query=found["query"])

    def _story(self, environ: Mapping[str, Any], asset_id: str, notice: Mapping[str, str] | None = None,
               status: HTTPStatus = HTTPStatus.OK) -> Response:
        told = story(self.sources, asset_id)
        if told is None:
            return self._message(environ, HTTPStatus.NOT_FOUND, "No such file", f"No file version {asset_id} in the "
                                 "ledger (forgotten, retired, or never seen).")
        buttons: list[str] = []
        newest = self.sources.ledger.latest_version(told["folder"], told["path"])
        if newest is not None:
            config = self.sources.config()
            buttons = [name for name, target in ACTIONS.items() if isinstance(target(newest, config), Target)]
        refresh = _seconds(self.sources.config().metrics.page_refresh_seconds)
        return self._render("story.html", environ, status, told=told, buttons=buttons, notice=notice,
                            refresh=refresh, refresh_url=f"/file/{told['asked']}")

    def _message(self, environ: Mapping[str, Any], status: HTTPStatus, title: str, text: str) -> Response:
        return self._render("message.html", environ, status, title=title, text=text)

    # -- actions -------------------------------------------------------------------------------------------------------

    def _refused(self, environ: Mapping[str, Any], status: HTTPStatus, text: str, **fields: Any) -> Response:
        log.warning("page_request_refused", status=status.value, reason=text, path=environ.get("PATH_INFO"),
                    client=environ.get("REMOTE_ADDR"), **fields)
        return self._message(environ, status, "Refused", text)

    def _checked(self, environ: Mapping[str, Any]) -> tuple[Session, dict[str, str]] | Response:
        """The session and form of a button's POST, or the refusal: actions on, sent from this page, signed in, the
        form's CSRF token right."""
        if self.access is None or not self.access.enabled:
            return self._refused(environ, HTTPStatus.FORBIDDEN, "Actions are off: the page is read-only "
                                 "(metrics.page_actions_token_file is not set or cannot be read).")
        if not same_origin(environ):
            return self._refused(environ, HTTPStatus.FORBIDDEN, "Refused: the request did not come from this page.")
        session = self.access.session(environ)
        if session is None:
            return self._refused(environ, HTTPStatus.FORBIDDEN, "Sign in with the actions token first.")
        try:
            form = _form(environ)
        except FormError as error:
            return self._refused(environ, error.status, str(error))
        if not session.csrf_ok(form.get("csrf")):
            return self._refused(environ, HTTPStatus.FORBIDDEN, "Refused: the form is stale or not this page's; "
                                 "reload the page and try again.")
        return session, form

    def _act(self, environ: Mapping[str, Any], asset_id: str, action: str) -> Response:
        checked = self._checked(environ)
        if isinstance(checked, Response):
            return checked
        ledger = self.sources.ledger
        asset = ledger.by_asset_id(asset_id) if ASSET_ID.fullmatch(asset_id) else None
        if asset is None:
            return self._message(environ, HTTPStatus.NOT_FOUND, "No such file", f"No file version {asset_id}.")
        newest = ledger.latest_version(asset.folder, asset.relpath)
        if newest is None or newest.id != asset.id:
            outcome = Requeued(False, "a newer version of the file is in the ledger", asset.state)
        else:
            outcome = requeue(ledger, asset, ACTIONS[action](asset, self.sources.config()))
        log.info("page_action", action=action, folder=asset.folder, path=asset.relpath, asset_id=asset.asset_id,
                 done=outcome.done, detail=outcome.detail, client=environ.get("REMOTE_ADDR"),
                 **{"from": outcome.from_state, "to": outcome.to_state})
        if outcome.done and outcome.to_state is not None:
            self.sources.requeued(State(outcome.to_state))
            text = f"{action}: {outcome.from_state} → {outcome.to_state}; {outcome.detail}"
            return self._story(environ, asset_id, {"kind": "done", "text": text})
        return self._story(environ, asset_id, {"kind": "refused", "text": f"{action}: not changed: {outcome.detail}"},
                           HTTPStatus.CONFLICT)

    def _sign_in(self, environ: Mapping[str, Any], method: str) -> Response:
        if self.access is None or not self.access.enabled:
            return self._message(environ, HTTPStatus.NOT_FOUND, "Read-only", "Actions are off: the page is read-only "
                                 "(metrics.page_actions_token_file is not set).")
        if method in ("GET", "HEAD"):
            return self._render("sign_in.html", environ, wrong=False)
        if method != "POST":
            return _text(HTTPStatus.METHOD_NOT_ALLOWED, "GET or POST only")
        if not same_origin(environ):
            return self._refused(environ, HTTPStatus.FORBIDDEN, "Refused: the request did not come from this page.")
        if self.access.throttled():
            return self._refused(environ, HTTPStatus.TOO_MANY_REQUESTS, "Too many wrong tokens: wait a minute.")
        try:
            form = _form(environ)
        except FormError as error:
            return self._refused(environ, error.status, str(error))
        session = self.access.sign_in(form.get("token", ""))
        if session is None:
            log.warning("page_sign_in_refused", client=environ.get("REMOTE_ADDR"))
            return self._render("sign_in.html", environ, HTTPStatus.FORBIDDEN, wrong=True)
        log.info("page_signed_in", client=environ.get("REMOTE_ADDR"))
        return Response(HTTPStatus.SEE_OTHER, b"", TEXT, (("Location", "/"), ("Set-Cookie", set_cookie(session))))

    def _sign_out(self, environ: Mapping[str, Any], method: str) -> Response:
        if method != "POST":
            return _text(HTTPStatus.METHOD_NOT_ALLOWED, "POST only")
        checked = self._checked(environ)
        if isinstance(checked, Response):
            return checked
        return Response(HTTPStatus.SEE_OTHER, b"", TEXT, (("Location", "/"), ("Set-Cookie", clear_cookie())))


def _seconds(value: float) -> int:
    return max(1, round(value))


def _text(status: HTTPStatus, text: str) -> Response:
    return Response(status, text.encode() + b"\n", TEXT)


def _form(environ: Mapping[str, Any]) -> dict[str, str]:
    """A small url-encoded form body, read only after its declared length was found small enough."""
    content_type = str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FormError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Expected a form (application/x-www-form-urlencoded).")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise FormError(HTTPStatus.BAD_REQUEST, "Bad Content-Length.") from None
    if length > FORM_BYTES:
        raise FormError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"A form of the page is under {FORM_BYTES} bytes.")
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        raise FormError(HTTPStatus.BAD_REQUEST, "Not a form of this page.") from None
    return {name: values[0] for name, values in fields.items()}
