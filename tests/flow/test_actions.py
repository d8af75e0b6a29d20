"""on_done and on_failed: moved with the sidecars, a command with its variables, an event POSTed; each action once,
in order, a crash repeating only the one under way."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deepva_watch.handoff.move import MoveRefused, move_together, plan_move
from deepva_watch.states import State
from deepva_watch.watch.discover import reconcile
from tests.conftest import small_tmpfs
from tests.flow.conftest import FakeClient, Flow, one_folder

S = State


def _flow(tmp_path: Path, client: FakeClient | None = None, **folder: Any) -> Flow:
    return one_folder(tmp_path, client=client, modules={"face_recognition": {}}, **folder)


def _run(flow: Flow, rounds: int = 8) -> None:
    flow.clock.advance(2)
    for _ in range(rounds):
        flow.run("settle", "sniff", "upload", "submit")
        flow.client.finish()
        flow.clock.advance(300)
        flow.run("track", "publish", "report", "act", "act")


def test_move_to_takes_media_and_sidecars_keeps_the_sub_path_and_never_overwrites(tmp_path: Path) -> None:
    done = tmp_path / "done"
    (done / "day1").mkdir(parents=True)
    (done / "day1" / "a.png").write_bytes(b"someone else's")
    flow = _flow(tmp_path, on_done={"move_to": str(done)})
    (flow.watch / "day1").mkdir()
    flow.drop("day1/a.png")
    _run(flow)

    row = flow.only()
    assert row.state == S.PUBLISHED and row.actions_done == 1
    moved = done / "day1" / "a (1).png"
    assert moved.is_file() and not (flow.watch / "day1" / "a.png").exists()
    assert (done / "day1" / "a.png").read_bytes() == b"someone else's"
    assert sorted(path.name for path in (done / "day1").iterdir()) == [
        "a (1).png", "a (1).png.deepva.json", "a (1).png.xmp", "a.png"]
    assert row.location == str(moved) and row.xmp_path == str(done / "day1" / "a (1).png.xmp")
    reconcile(flow.services.ledger, flow.config.folders[0], flow.clock.now())
    assert len(flow.services.ledger.query()) == 1 and len(flow.client.jobs) == 1
    story = flow.services.ledger.history([row.asset_id])
    assert any(entry.note == f"moved to {moved}" for entry in story)


def test_a_move_inside_a_watched_folder_is_followed_by_the_ledger(tmp_path: Path) -> None:
    (tmp_path / "watch" / "done").mkdir(parents=True)
    flow = _flow(tmp_path, on_done={"move_to": "done"})
    flow.drop("a.png")
    _run(flow)

    row = flow.only()
    assert (row.state, row.relpath, row.location) == (S.PUBLISHED, "done/a.png", None)
    reconcile(flow.services.ledger, flow.config.folders[0], flow.clock.now())
    assert [(r.relpath, r.state) for r in flow.services.ledger.query()] == [("done/a.png", S.PUBLISHED)]
    assert len(flow.client.jobs) == 1, "moved into the watched tree, not discovered as new"


def test_a_crash_mid_move_is_finished_by_the_next_try(tmp_path: Path) -> None:
    done = tmp_path / "done"
    done.mkdir()
    flow = _flow(tmp_path, on_done={"move_to": str(done)})
    flow.drop("a.png")
    flow.clock.advance(2)
    for _ in range(3):
        flow.run("settle", "sniff", "upload", "submit")
    flow.client.finish()
    flow.clock.advance(300)
    flow.run("track", "publish", "act")  # plans and commits the new name
    row = flow.only()
    assert row.state == S.HANDING_ON and row.move_target == str(done / "a.png")
    os.rename(row.xmp_path or "", done / "a.png.xmp")  # the sidecar moved, then the daemon was killed
    flow.services.ledger.recover(flow.clock.now())
    flow.run("act")

    row = flow.only()
    assert row.state == S.PUBLISHED and sorted(path.name for path in done.iterdir()) == [
        "a.png", "a.png.deepva.json", "a.png.xmp"]


@pytest.mark.parametrize("taken", ["before the move", "between its check and the rename"])
def test_a_name_taken_after_the_plan_is_never_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken: str,
) -> None:
    media, sidecar, done = tmp_path / "clip.mov", tmp_path / "clip.mov.xmp", tmp_path / "done"
    media.write_bytes(b"ours")
    sidecar.write_bytes(b"<x/>")
    target = plan_move(media, [sidecar], done)
    done.mkdir()
    (done / "clip.mov").write_bytes(b"someone else's")
    if taken != "before the move":  # the check saw a free name: only a move that cannot replace is safe
        real = os.path.lexists
        monkeypatch.setattr(os.path, "lexists", lambda path: False if Path(path) == target else real(path))
    with pytest.raises(MoveRefused):
        move_together(media, [sidecar], target)
    assert (done / "clip.mov").read_bytes() == b"someone else's" and media.read_bytes() == b"ours"


@pytest.mark.parametrize("placed_by", ["link", "copy"])
def test_a_crash_after_placing_before_removing_is_finished_by_the_next_try(tmp_path: Path, placed_by: str) -> None:
    media, done = tmp_path / "clip.mov", tmp_path / "done"
    media.write_bytes(os.urandom(200_000))
    content = media.read_bytes()
    target = plan_move(media, [], done)
    done.mkdir()
    if placed_by == "link":  # same file system: linked, killed before the original was removed
        os.link(media, target)
    else:  # across file systems: the verified copy in place, killed before the original was removed
        shutil.copy2(media, target)
    move_together(media, [], target)
    assert not media.exists() and target.read_bytes() == content


def test_exec_gets_the_documented_variables_and_its_output_is_in_the_story(tmp_path: Path) -> None:
    record = tmp_path / "record.json"
    script = ("import json, os, sys; json.dump({k: v for k, v in os.environ.items() if k.startswith('DEEPVA')}, "
              f"open({str(record)!r}, 'w')); print('ingested'); print('into the MAM')")
    flow = _flow(tmp_path, on_done={"exec": [sys.executable, "-c", script]})
    flow.drop("a.png")
    _run(flow)

    row = flow.only()
    variables = json.loads(record.read_text())
    assert variables == {
        "DEEPVA_WATCH_OUTCOME": "done", "DEEPVA_WATCH_PATH": str(flow.watch / "a.png"),
        "DEEPVA_WATCH_FOLDER": str(flow.watch), "DEEPVA_WATCH_RELPATH": "a.png",
        "DEEPVA_WATCH_ASSET_ID": row.asset_id, "DEEPVA_WATCH_JOB_ID": row.job_id,
        "DEEPVA_WATCH_XMP": row.xmp_path, "DEEPVA_WATCH_JSON": row.json_path, "DEEPVA_WATCH_ERROR": ""}
    assert row.last_action == f"exec: {sys.executable} exited 0: ingested | into the MAM"


def test_a_failing_command_is_retried_then_reported_and_retry_runs_it_again(tmp_path: Path) -> None:
    flag = tmp_path / "fixed"
    script = f"import os, sys; print('MAM offline'); sys.exit(0 if os.path.exists({str(flag)!r}) else 3)"
    flow = _flow(tmp_path, on_done={"exec": [sys.executable, "-c", script]})
    flow.drop("a.png")
    for _ in range(12):
        _run(flow, rounds=1)
        flow.clock.advance(1000)
    row = flow.only()
    assert (row.state, row.failed_in) == (S.FAILED, "act")
    assert row.last_error == f"exec: {sys.executable} exited 3: MAM offline"

    from deepva_watch.commands.requeue import retry_target
    target = retry_target(row, flow.config)
    assert not hasattr(target, "reason"), target
    flow.services.ledger.transition(row, S.FAILED, target.state, flow.clock.now(), **dict(target.changes))
    flag.write_text("")
    flow.run("act")
    assert flow.only().state == S.PUBLISHED and len(flow.client.jobs) == 1


def test_a_command_that_hangs_is_killed_at_its_timeout(tmp_path: Path) -> None:
    flow = _flow(tmp_path, on_done={"exec": ["sleep", "30"], "exec_timeout_seconds": 1})
    flow.drop("a.png")
    _run(flow, rounds=1)
    row = flow.only()
    assert row.state == S.HANDING_ON and row.last_error == "exec: sleep was killed after 1 s"


class Receiver:
    """A local HTTP server that records what it is sent and answers with the statuses it is given, in turn."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k: v for k, v in self.headers.items()}, body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver([503, 502])
    yield server
    server.server.shutdown()


def test_http_posts_a_signed_event_retries_5xx_and_keeps_its_id(tmp_path: Path, receiver: Receiver) -> None:
    secret, headers = tmp_path / "secret", tmp_path / "headers"
    secret.write_text("hook-secret-1\n")
    headers.write_text("# for the MAM\nAuthorization: Bearer mam-token-77\n")
    flow = _flow(tmp_path, on_done={"http": {"url": receiver.url, "secret_file": str(secret),
                                             "headers_file": str(headers)}})
    flow.drop("a.png")
    for _ in range(3):
        _run(flow, rounds=1)
        flow.clock.advance(1000)

    row = flow.only()
    assert row.state == S.PUBLISHED and len(receiver.received) == 3
    ids = {sent_headers["X-DeepVA-Watch-Event"] for sent_headers, _ in receiver.received}
    assert ids == {f"{row.asset_id}.done"}, "every try carries the same event id"
    sent_headers, body = receiver.received[-1]
    assert sent_headers["X-DeepVA-Watch-Signature"] == "sha256=" + hmac.new(
        b"hook-secret-1", body, hashlib.sha256).hexdigest()
    assert sent_headers["Authorization"] == "Bearer mam-token-77"
    event = json.loads(body)
    assert (event["outcome"], event["path"], event["job_id"]) == ("done", str(flow.watch / "a.png"), row.job_id)


def test_on_failed_runs_for_a_file_that_failed_for_good(tmp_path: Path) -> None:
    failed, unused = tmp_path / "failed", tmp_path / "unused"
    failed.mkdir()
    unused.mkdir()
    flow = _flow(tmp_path, on_failed={"move_to": str(failed)}, on_done={"move_to": str(unused)})
    flow.drop("a.png")
    flow.clock.advance(2)
    for _ in range(3):
        flow.run("settle", "sniff", "upload", "submit")
    flow.client.finish("failed", errors=("corrupt media",))
    flow.clock.advance(300)
    for _ in range(4):
        flow.run("track", "report", "act")

    row = flow.only()
    assert (row.state, row.failed_in) == (S.FAILED, "report") and "corrupt media" in (row.last_error or "")
    assert (failed / "a.png").is_file() and (failed / "a.png.deepva.json").is_file()


def test_move_to_another_file_system_copies_verifies_and_removes(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "tmpfs", "8m") as other:
        flow = _flow(tmp_path, on_done={"move_to": str(other)})
        flow.drop("a.png")
        before = (flow.watch / "a.png").stat()
        _run(flow)
        row = flow.only()
        moved = other / "a.png"
        assert row.state == S.PUBLISHED and row.location == str(moved)
        assert moved.stat().st_mtime_ns == before.st_mtime_ns and moved.stat().st_size == before.st_size
        assert sorted(path.name for path in other.iterdir()) == ["a.png", "a.png.deepva.json", "a.png.xmp"]
        assert sorted(path.name for path in flow.watch.iterdir()) == [], "nothing left behind, no temporary"
