"""Actions end to end: a SIGKILL of the daemon during an action repeats it exactly once after the restart."""

from __future__ import annotations

import shutil
import signal
import sys

from tests.conftest import FIXTURES, ledger_rows, wait_for, write_config


def test_an_action_cut_off_by_a_kill_runs_again_exactly_once(tmp_path, emulator, daemon_factory):
    watch = tmp_path / "watch"
    watch.mkdir()
    runs = tmp_path / "runs.log"
    script = (f"import time; open({str(runs)!r}, 'a').write('run\\n'); time.sleep(2)")
    config = write_config(tmp_path, emulator.base_url, [watch],
                          folder={"on_done": {"exec": [sys.executable, "-c", script]}})
    first = daemon_factory(config)
    shutil.copy(FIXTURES / "sample.jpg", watch / "a.jpg")
    wait_for(lambda: runs.exists() and runs.read_text() == "run\n", 60, "the action to start")
    first.stop(signal.SIGKILL)

    second = daemon_factory(config)
    wait_for(lambda: [row["state"] for row in ledger_rows(tmp_path / "ledger.sqlite3")] == ["published"], 60,
             "the file to be published after its action")
    assert second.stop() == 0
    assert runs.read_text() == "run\nrun\n", "cut off once, run once more, never again"
    assert emulator.stats()["jobs_created"] == 1
