"""The status page and /status.json over real HTTP, against a real ledger: what they show, that every name is
escaped, and that the buttons need the token, a session, the form's CSRF token and a request from the page itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from deepva_watch.config import Config, parse_config
from deepva_watch.flow.transfers import Transfers
from deepva_watch.ledger import Asset, SqliteLedger
from deepva_watch.listener import Listener
from deepva_watch.service import access as access_module
from deepva_watch.service.access import COOKIE, Access, TokenFile
from deepva_watch.service.health import Health
from deepva_watch.service.metrics import Metrics
from deepva_watch.service.page import StatusPage
from deepva_watch.service.status import SEARCH_LIMIT, Sources
from deepva_watch.service.web import web_app
from deepva_watch.states import State
from deepva_watch.watch.supervisor import FolderStatus

FOLDER = "/srv/media/news"
TOKEN = "page-token-6c1e0f2b9a7d43e8"
HOSTILE = "<script>alert(1)</script>.jpg"
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
       "frame-ancestors 'none'")


class Site:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
        self.token_file = tmp_path / "page-token"
        self.token_file.write_text(TOKEN + "\n")
        self.token_file.chmod(0o600)
        self.config = self.configure()
        self.folders = [FolderStatus(FOLDER, "poll", False, "", None, 0, why_mode="nfs4: network file systems are polled"),
                        FolderStatus("/srv/media/archive", "events", True, "anchor file .mounted is missing", None, 0)]
        self.transfers = Transfers()
        self.woken: list[State] = []
        self.health = Health(api_failure_seconds=300, folder_statuses=lambda: self.folders,
                             ledger_problem=lambda: None)
        sources = Sources(ledger=self.ledger, config=lambda: self.config, folders=lambda: self.folders,
                          uploads=self.transfers.running, health=self.health, requeued=self.woken.append)
        page = StatusPage(sources, Access(TokenFile(lambda: self.config.metrics.page_actions_token_file)))
        metrics = Metrics(ledger_counts=self.ledger.count_by_folder_and_state, folder_statuses=lambda: self.folders)
        self.server = Listener("127.0.0.1:0", web_app(metrics, self.health, page), name="metrics",
                               max_body_bytes=16 * 1024).start()
        host, port = self.server.address
        self.base = f"http://{host}:{port}"

    def configure(self, **metrics: Any) -> Config:
        settings = {"listen": "127.0.0.1:9187", "page_actions_token_file": str(self.token_file), **metrics}
        return parse_config({"folders": [{"path": FOLDER, "modules": {"face_recognition": {}}}],
                             "ledger": str(self.tmp_path / "ledger.sqlite3"), "metrics": settings}, check_paths=False)

    def add(self, relpath: str, state: str, **changes: Any) -> Asset:
        observation = self.ledger.observe(FOLDER, relpath, 10, 1, now=1000.0)
        asset = self.ledger.by_asset_id(observation.asset_id or "")
        assert asset is not None
        return self.ledger.transition(asset, asset.state, State(state), 1001.0, stage="test", **changes)

    def get(self, path: str, session: requests.Session | None = None) -> requests.Response:
        return (session or requests).get(self.base + path, timeout=10, allow_redirects=False)

    def post(self, path: str, data: dict[str, str], session: requests.Session | None = None,
             origin: str | None = "same") -> requests.Response:
        headers = {} if origin is None else {"Origin": self.base if origin == "same" else origin}
        return (session or requests).post(self.base + path, data=data, headers=headers, timeout=10,
                                          allow_redirects=False)

    def signed_in(self) -> tuple[requests.Session, str]:
        """A browser session signed in with the token, and the CSRF token its forms carry."""
        browser = requests.Session()
        answer = self.post("/sign-in", {"token": TOKEN}, browser)
        assert answer.status_code == 303, answer.text
        return browser, csrf_of(self.get("/", browser).text)


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match, "no form with a CSRF token on the page"
    return match.group(1)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    site = Site(tmp_path)
    try:
        yield site
    finally:
        site.server.stop()
        site.ledger.close()


def test_the_front_page_shows_folders_states_uploads_and_failures(site: Site) -> None:
    site.add("clips/a.jpg", "published")
    site.add("clips/b.mxf", "accepted")
    failed = site.add("clips/c.jpg", "failed", last_error="DeepVA job failed: no faces", failed_in="report")
    uploading = site.add("clips/big.mxf", "uploading")
    transfer = site.transfers.start(uploading.asset_id, FOLDER, "clips/big.mxf", 800_000_000)
    transfer.sent(200_000_000)

    answer = site.get("/")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert answer.headers["Content-Security-Policy"].startswith(CSP)
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    page = answer.text
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "<script" not in page  # no script at all: the page works under default-src 'none'
    assert "nfs4: network file systems are polled" in page and "anchor file .mounted is missing" in page
    assert re.search(r'data-state="published">1<', page) and re.search(r'data-state="failed">1<', page)
    assert f'<a href="/file/{failed.asset_id}" title="{FOLDER}/clips/c.jpg">clips/c.jpg</a>' in page
    assert "DeepVA job failed: no faces" in page
    assert '<progress max="800000000" value="200000000"></progress> 25 %' in page
    assert "200.0 MB of 800.0 MB" in page
    assert TOKEN not in page and "page-token" not in page  # not the token, nor where it lives

    document = site.get("/status.json").json()
    assert document["totals"] == {"accepted": 1, "uploading": 1, "published": 1, "failed": 1}
    assert document["backlog"] == 2
    news = next(folder for folder in document["folders"] if folder["folder"] == FOLDER)
    assert (news["mode"], news["paused"], news["states"]["published"]) == ("poll", False, 1)
    archive = next(folder for folder in document["folders"] if folder["folder"] == "/srv/media/archive")
    assert (archive["paused"], archive["reason"]) == (True, "anchor file .mounted is missing")
    assert document["health"]["status"] == "unhealthy"
    [upload] = document["uploads"]
    assert (upload["path"], upload["sent"], upload["total"], upload["fraction"]) == ("clips/big.mxf", 200_000_000,
                                                                                      800_000_000, 0.25)
    assert upload["rate"] > 0 and upload["eta_seconds"] is not None and upload["eta_seconds"] >= 0
    assert [failure["path"] for failure in document["recent_failures"]] == ["clips/c.jpg"]
    assert document["oldest_waiting"]["path"] == "clips/b.mxf"
    assert TOKEN not in str(document)


def test_every_file_name_is_shown_as_text(site: Site) -> None:
    hostile = site.add(HOSTILE, "failed", last_error='<img src=x onerror="alert(2)">', failed_in="sniff")
    for path in ("/", f"/file/{hostile.asset_id}", "/search?q=script", "/search?q=<b>x</b>"):
        page = site.get(path).text
        assert "<script>" not in page and "<img src=x" not in page and "<b>x</b>" not in page, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in site.get("/").text
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in site.get(f"/file/{hostile.asset_id}").text
    found = site.get("/search?q=SCRIPT").text
    assert found.count('<tr data-asset="') == 1 and ">&lt;script&gt;alert(1)&lt;/script&gt;.jpg</a>" in found


def test_search_ignores_case_and_is_bounded(site: Site) -> None:
    for index in range(SEARCH_LIMIT + 5):
        site.add(f"day/Clip-{index:03d}.MXF", "settling")
    site.add("day/other.jpg", "published")
    page = site.get("/search?q=clip-00").text
    assert page.count('<tr data-asset="') == 10 and "Clip-009.MXF" in page
    many = site.get("/search?q=.mxf").text
    assert many.count('<tr data-asset="') == SEARCH_LIMIT and 'id="more"' in many
    assert 'id="nothing"' in site.get("/search?q=nowhere").text
    assert site.get("/search?q=" + "x" * 5000).status_code == 200


def test_the_story_page_tells_every_version_and_step(site: Site) -> None:
    first = site.add("clip.mxf", "published", job_id="job-1", job_state="completed")
    second = site.ledger.observe(FOLDER, "clip.mxf", 20, 2, now=2000.0)  # a new version
    page = site.get(f"/file/{first.asset_id}").text
    assert page.count('<section class="version') == 2
    assert first.asset_id in page and second.asset_id in page
    assert "settling → published" in page and "job-1: completed" in page
    assert f'<meta http-equiv="refresh" content="5; url=/file/{first.asset_id}">' in page
    assert site.get("/file/dvw-" + "0" * 32).status_code == 404
    assert site.get("/file/../../etc/passwd").status_code == 404


def test_without_a_token_file_the_page_is_read_only(site: Site) -> None:
    failed = site.add("a.jpg", "failed", last_error="boom", failed_in="upload")
    site.config = site.configure(page_actions_token_file=None)
    page = site.get(f"/file/{failed.asset_id}").text
    assert "read-only" in page and "<form method=\"post\"" not in page and "Sign in" not in page
    assert site.get("/sign-in").status_code == 404
    assert site.post(f"/file/{failed.asset_id}/retry", {"csrf": "x"}).status_code == 403
    assert site.ledger.by_asset_id(failed.asset_id).state == "failed"


def test_a_button_needs_the_token_the_csrf_token_and_this_page(site: Site) -> None:
    failed = site.add("a.jpg", "failed", last_error="boom", failed_in="upload")
    action = f"/file/{failed.asset_id}/retry"
    assert "Sign in for actions" in site.get("/").text
    assert 'name="csrf"' not in site.get(f"/file/{failed.asset_id}").text  # no buttons before signing in

    assert site.post(action, {"csrf": "0" * 64}).status_code == 403  # no session
    wrong = requests.Session()
    assert site.post("/sign-in", {"token": "not-the-token-at-all"}, wrong).status_code == 403
    assert COOKIE not in wrong.cookies
    assert site.post("/sign-in", {"token": TOKEN}, origin="http://evil.example").status_code == 403

    browser, csrf = site.signed_in()
    cookie = site.post("/sign-in", {"token": TOKEN}).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    assert site.post(action, {"csrf": "0" * 64}, browser).status_code == 403  # a forged form
    assert site.post(action, {"csrf": csrf}, browser, origin="http://evil.example").status_code == 403
    assert site.post(action, {"csrf": csrf}, browser, origin=None).status_code == 403  # no Origin, no Referer
    assert site.post(action, {"csrf": csrf, "pad": "x" * 8000}, browser).status_code == 413
    assert site.post(action, {"csrf": csrf, "pad": "x" * 20000}, browser).status_code == 413  # the listener's cap
    assert site.ledger.by_asset_id(failed.asset_id).state == "failed"

    done = site.post(action, {"csrf": csrf}, browser)
    assert done.status_code == 200, done.text
    assert "retry: failed → accepted; it will be uploaded again" in done.text
    row = site.ledger.by_asset_id(failed.asset_id)
    assert (row.state, row.last_error, row.failed_in, row.attempts) == ("accepted", None, None, 0)
    assert site.woken == [State.ACCEPTED]
    assert [entry.stage for entry in site.ledger.history([failed.asset_id])][-1] == "operator"

    again = site.post(action, {"csrf": csrf}, browser)
    assert again.status_code == 409 and "not changed: not failed (it is accepted)" in again.text


def test_reprocess_from_the_page_needs_a_new_job_like_the_command(site: Site) -> None:
    published = site.add("a.jpg", "published", kind="image", job_id="job-1", job_state="completed",
                         storage_url="deepva://storage/1")
    browser, csrf = site.signed_in()
    story = site.get(f"/file/{published.asset_id}", browser).text
    assert 'id="reprocess"' in story and 'id="retry"' not in story
    answer = site.post(f"/file/{published.asset_id}/reprocess", {"csrf": csrf}, browser)
    assert answer.status_code == 200 and "published → uploaded" in answer.text
    row = site.ledger.by_asset_id(published.asset_id)
    assert (row.state, row.job_id, row.storage_url) == ("uploaded", None, "deepva://storage/1")


def test_a_new_token_ends_every_session_and_wrong_tokens_are_throttled(site: Site, monkeypatch) -> None:
    failed = site.add("a.jpg", "failed", last_error="boom", failed_in="upload")
    browser, csrf = site.signed_in()
    site.token_file.write_text("another-token-0123456789abcdef\n")
    assert site.post(f"/file/{failed.asset_id}/retry", {"csrf": csrf}, browser).status_code == 403

    monkeypatch.setattr(access_module, "SIGN_IN_FAILURES_PER_MINUTE", 3)
    for _ in range(3):
        assert site.post("/sign-in", {"token": "wrong-token-wrong-token"}).status_code == 403
    assert site.post("/sign-in", {"token": "another-token-0123456789abcdef"}).status_code == 429


def test_a_short_token_is_refused(tmp_path: Path) -> None:
    from deepva_watch.config import ConfigError

    short = tmp_path / "token"
    short.write_text("short\n")
    with pytest.raises(ConfigError, match="metrics.page_actions_token_file: .* fewer than 16 characters"):
        TokenFile(lambda: short).check()


def test_the_page_can_be_turned_off(site: Site) -> None:
    site.config = site.configure(page=False)
    for path in ("/", "/status.json", "/search?q=a", "/sign-in"):
        assert site.get(path).status_code == 404, path
    assert site.get("/healthz").status_code == 503  # the archive folder is paused
    assert site.get("/metrics").status_code == 200


def test_sessions_expire_cannot_be_forged_and_survive_other_cookies(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    clock = [1000.0]
    access = Access(TokenFile(lambda: token), clock=lambda: clock[0])
    session = access.sign_in(TOKEN)
    assert session is not None and TOKEN not in session.cookie
    header = f'broken="a b\\c; {COOKIE}={session.cookie}; other=1'
    assert access.session({"HTTP_COOKIE": header}) == session
    issued, nonce, _ = session.cookie.split(".")
    assert access.session({"HTTP_COOKIE": f"{COOKIE}={issued}.{nonce}.{'0' * 64}"}) is None
    assert access.session({"HTTP_COOKIE": f"{COOKIE}={int(issued) + 1}.{nonce}.{session.cookie.split('.')[2]}"}) is None
    clock[0] += access_module.SESSION_SECONDS + 1
    assert access.session({"HTTP_COOKIE": header}) is None


@pytest.mark.parametrize(("headers", "same"), [
    ({"HTTP_ORIGIN": "http://127.0.0.1:9187"}, True),
    ({"HTTP_ORIGIN": "https://127.0.0.1:9187"}, True),  # behind a TLS-terminating proxy
    ({"HTTP_REFERER": "http://127.0.0.1:9187/file/dvw-1"}, True),
    ({"HTTP_ORIGIN": "http://127.0.0.1:9188"}, False),
    ({"HTTP_ORIGIN": "http://evil.example", "HTTP_REFERER": "http://127.0.0.1:9187/"}, False),
    ({"HTTP_ORIGIN": "null"}, False),
    ({"HTTP_REFERER": "http://127.0.0.1:9187.evil.example/"}, False),
    ({}, False),
])
def test_a_post_counts_only_from_this_page(headers: dict[str, str], same: bool) -> None:
    assert access_module.same_origin({"HTTP_HOST": "127.0.0.1:9187", **headers}) is same
