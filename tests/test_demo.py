"""The demo fails loudly: every sample's state, the last warnings of both logs, and the reason in one sentence."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
assert _spec is not None and _spec.loader is not None
demo = importlib.util.module_from_spec(_spec)
sys.modules["demo"] = demo
_spec.loader.exec_module(demo)


def _row(relpath: str, state: str, error: str | None = None) -> dict[str, object]:
    return {"relpath": relpath, "state": state, "last_error": error, "job_id": None}


def test_the_reason_names_what_went_wrong() -> None:
    assert demo.why_not_published([], 2) == "the daemon exited with code 2 before the samples were published"
    assert demo.why_not_published([], None).startswith(f"{len(demo.SAMPLES)} sample(s) were never discovered")
    every = [_row(name, "published") for name in demo.SAMPLES]
    failed = [*every[:-1], _row(demo.SAMPLES[-1], "failed", "POST /storage/: 500 Internal Server Error")]
    assert demo.why_not_published(failed, None) == (
        f"1 sample(s) ended failed; the first: {demo.SAMPLES[-1]}: POST /storage/: 500 Internal Server Error")
    waiting = [*every[:-1], _row(demo.SAMPLES[-1], "uploading")]
    assert demo.why_not_published(waiting, None) == f"samples were still uploading after {demo.TIMEOUT_SECONDS} s"


def test_a_failure_report_shows_each_sample_and_the_last_problems_of_both_logs(tmp_path: Path, capsys) -> None:
    (tmp_path / "daemon.log").write_text(
        '{"event": "started", "level": "info"}\n{"event": "api_retry", "level": "warning", "status": 503}\n')
    (tmp_path / "emulator.log").write_text("listening\n")
    rows = [_row(demo.SAMPLES[0], "failed", "DeepVA refused the API key")]
    demo.report_failure(tmp_path, rows, "something broke")
    err = capsys.readouterr().err
    assert f"{demo.SAMPLES[0]}" in err and "failed (DeepVA refused the API key)" in err
    assert f"{demo.SAMPLES[1]}" in err and "not discovered" in err
    assert '"api_retry"' in err and '"started"' not in err, "only warnings and worse from a log that marks them"
    assert "listening" in err, "the tail of a log that marks nothing"
    assert err.rstrip().endswith("demo FAILED: something broke")
