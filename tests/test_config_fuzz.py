"""``check-config`` over random YAML: any value at any key, any document, any bytes. The answer is always exit 0 or 2
with one ``config error`` line per problem, never a traceback.

Seeded (``derandomize``), so a failure found in CI is found again on any machine with the same example.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepva_watch.cli import main

KEYS = (
    ("api", "url"), ("api", "key_file"), ("api", "retries"), ("api", "read_timeout_seconds"), ("api", "ca_bundle"),
    ("ledger",), ("max_uploads",), ("max_active_jobs",), ("poll_interval_seconds",), ("max_requests_per_minute",),
    ("overdue_job_seconds",), ("overdue_job_release_seconds",), ("max_upload_mbps",), ("log_level",),
    ("webhook", "listen"), ("webhook", "callback_url"), ("webhook", "secret_file"), ("metrics", "listen"),
    ("metrics", "api_failure_seconds"), ("folders",), ("folders", 0), ("folders", 0, "path"),
    ("folders", 0, "modules"), ("folders", 0, "settle_seconds"), ("folders", 0, "include"),
    ("folders", 0, "max_size"), ("folders", 0, "source"), ("folders", 0, "path_map"),
    ("folders", 0, "sidecars"), ("folders", 0, "sidecars", "naming"), ("folders", 0, "sidecars", "output_dir"),
    ("folders", 0, "priority"), ("unknown",),
)

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.inf, -math.inf, math.nan, 0, -1, 1e308]),
    st.text(max_size=40), st.sampled_from(["[::1]:8787", "::1:8787", "0.0.0.0:99999", "http://", "/dev/null",
                                           "/etc", "", "~", "..", "a:b:c"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)


def _valid(tmp: Path) -> dict[str, Any]:
    (tmp / "watch").mkdir(exist_ok=True)
    (tmp / "key").write_text("k-123\n")
    return {"api": {"url": "http://127.0.0.1:9/api/v1", "key_file": str(tmp / "key")},
            "ledger": str(tmp / "ledger.sqlite3"),
            "folders": [{"path": str(tmp / "watch"), "modules": {"face_recognition": {}}}]}


def _set(data: Any, key: tuple[Any, ...], value: Any) -> None:
    for part in key[:-1]:
        if isinstance(data, dict):
            data = data.setdefault(part, {})
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return
    if isinstance(data, dict):
        data[key[-1]] = value
    elif isinstance(data, list) and isinstance(key[-1], int) and key[-1] < len(data):
        data[key[-1]] = value


def _check(config: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check-config", "-c", str(config)])  # an exception here fails the test with its traceback
    return code, err.getvalue()


def _assert_answered(code: int, err: str) -> None:
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err
    if code == 2:
        lines = err.strip().splitlines()
        assert lines and all(line.startswith("deepva-watch: config error: ") for line in lines), err


FUZZ = settings(max_examples=600, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=4))
def test_any_value_at_any_key_is_accepted_or_refused_in_lines(tmp_path: Path, changes: list[Any]) -> None:
    data = _valid(tmp_path)
    for key, value in changes:
        _set(data, key, value)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    _assert_answered(*_check(config))


@FUZZ
@given(document=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                          VALUES.map(lambda value: yaml.safe_dump(value).encode())))
def test_any_document_is_accepted_or_refused_in_lines(tmp_path: Path, document: bytes) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(document)
    _assert_answered(*_check(config))


@FUZZ
@given(key=st.binary(max_size=64))
def test_any_key_file_is_accepted_or_refused_in_lines(tmp_path: Path, key: bytes) -> None:
    data = _valid(tmp_path)
    (tmp_path / "key").write_bytes(key)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    _assert_answered(*_check(config))
