"""Hostile answers from the API, through the real client, the real stages and the real sidecar writers.

A compromised or broken server (or a proxy in front of it) may put anything in a response. Whatever it sends, the daemon
must not crash, must not write outside its sidecar locations, and must record either a clean result or a failure with a
reason. Each scenario is one file in the watched folder; the fake server picks its answers by the file's name.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


from tests.conftest import FIXTURES, write_config
from tests.hostile.conftest import peak_rss_kib, rows_when_final, snapshot
from tests.hostile.fake_deepva import Answers, FakeDeepVA, as_json, plain_job

DC_SUBJECT = "{http://purl.org/dc/elements/1.1/}subject"
RDF_LI = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}li"
MARKUP_LABELS = ["<script>alert(1)</script>", "]]>", "&amp;", "a\"b'c<d>&e", "<?xml version='1.0'?>", "<!-- x -->"]
ESCAPES = ["../../../../escaped", "/tmp/escaped-absolute", "..", "/", "..\\..\\windows", "a/../../b"]
BIG_LABELS = 50_000
BIG_LABEL_BYTES = 1000  # 50 000 distinct labels of 1000 bytes: a 50 MB summary


def _items(labels: list[str], module: str | None = None) -> list[dict[str, Any]]:
    return [{"type": "object", "label": label, **({"module": module} if module else {})} for label in labels]


def _segments(entries: list[dict[str, Any]]) -> bytes:
    return as_json({"total": len(entries), "offset": 0, "limit": 100, "next": None, "prev": None, "data": entries})


def markup(job_id: str, tag: str, source: str) -> Answers:
    job = plain_job(job_id, tag, source)
    job["result"]["summary"] = [{"source": source, "media_type": "image", "items": _items(MARKUP_LABELS)}]
    segment = {"module": "object_scene_recognition", "source": source, "media_type": "image",
               "meta": {"label": "<b>]]></b>&lt;", "type": "object", "confidence": 0.5}, "detections": []}
    return Answers(as_json(job), _segments([segment]))


def escape(job_id: str, tag: str, source: str) -> Answers:
    """``../`` and absolute paths in every field that could reach a file name."""
    job = plain_job(job_id, ESCAPES[0], ESCAPES[1], sources=ESCAPES, errors=ESCAPES, media_type="../../x",
                    modules={name: {"model": name} for name in ESCAPES})
    job["result"]["summary"] = [{"source": name, "media_type": name, "items": _items(ESCAPES, module=name)}
                                for name in ESCAPES]
    segments = [{"module": name, "source": name, "media_type": name, "type": name, "tc_start": name,
                 "meta": {"label": name, "type": name, "name": name, "file": name}, "detections": [{"type": name}]}
                for name in ESCAPES]
    return Answers(as_json(job), _segments(segments))


def big_summary(job_id: str, tag: str, source: str) -> Answers:
    job = plain_job(job_id, tag, source)
    labels = [f"{number:08d}" + "x" * (BIG_LABEL_BYTES - 8) for number in range(BIG_LABELS)]
    job["result"]["summary"] = [{"source": source, "media_type": "image", "items": _items(labels)}]
    return Answers(as_json(job))


def nested(job_id: str, tag: str, source: str) -> Answers:
    return Answers(b"[" * 100_000 + b"]" * 100_000)


def nested_results(job_id: str, tag: str, source: str) -> Answers:
    return Answers(as_json(plain_job(job_id, tag, source)), b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def deep_meta(job_id: str, tag: str, source: str) -> Answers:
    """Nested just shallow enough to parse: the sidecar writer must cope with what the client accepted."""
    depth = 960
    meta = b'{"label": "deep", "x": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"
    segment = b'{"module": "m", "source": "s", "media_type": "image", "meta": ' + meta + b"}"
    return Answers(as_json(plain_job(job_id, tag, source)),
                   b'{"total": 1, "offset": 0, "next": null, "data": [' + segment + b"]}")


def bad_utf8(job_id: str, tag: str, source: str) -> Answers:
    body = as_json(plain_job(job_id, tag, source)).replace(b'"tree"', b'"tr\xff\xfe\xc3e"')
    return Answers(body)


def numbers_as_strings(job_id: str, tag: str, source: str) -> Answers:
    job = plain_job(job_id, tag, source, progress="1.0", duration="12.5")
    segment = {"module": "face_recognition", "source": source, "media_type": "image", "frame_start": "0",
               "time_start": "0.0", "time_end": "NaN", "meta": {"label": "Jane Doe", "type": "face", "confidence": "0.9"},
               "detections": [{"type": "face", "frame_index": "0", "data": {"x": "0.1", "y": "0.1", "w": "0.2", "h": "0.2"}}]}
    return Answers(as_json(job), _segments([segment]))


def object_for_list(job_id: str, tag: str, source: str) -> Answers:
    job = plain_job(job_id, tag, source)
    job["result"]["summary"] = {"items": {"label": "tree"}}
    return Answers(as_json(job))


def nulls(job_id: str, tag: str, source: str) -> Answers:
    return Answers(as_json({key: None for key in plain_job(job_id, tag, source)}))


def nulls_but_id(job_id: str, tag: str, source: str) -> Answers:
    body = {key: None for key in plain_job(job_id, tag, source)}
    body.update(id=job_id, state="completed")
    return Answers(as_json(body), as_json({"total": None, "offset": None, "next": None, "data": None}))


def object_labels(job_id: str, tag: str, source: str) -> Answers:
    job = plain_job(job_id, tag, source)
    job["result"]["summary"] = [{"source": source, "media_type": "image", "items": [{"type": [], "label": {"a": 1}}]}]
    return Answers(as_json(job))


def list_meta(job_id: str, tag: str, source: str) -> Answers:
    return Answers(as_json(plain_job(job_id, tag, source)), _segments([{"module": 1, "meta": [1, 2], "detections": {}}]))


#: scenario -> the final states it may end in (a failure must carry a reason)
SCENARIOS = {
    "markup": (markup, {"published"}),
    "escape": (escape, {"published"}),
    "big": (big_summary, {"published", "failed"}),
    "nested": (nested, {"failed"}),
    "nestedresults": (nested_results, {"failed"}),
    "deepmeta": (deep_meta, {"published", "failed"}),
    "badutf8": (bad_utf8, {"failed", "published"}),
    "strings": (numbers_as_strings, {"published"}),
    "objectforlist": (object_for_list, {"failed"}),
    "nulls": (nulls, {"failed"}),
    "nullsbutid": (nulls_but_id, {"published", "failed"}),
    "objectlabels": (object_labels, {"failed"}),
    "listmeta": (list_meta, {"failed"}),
}


def _subjects(xmp: Path) -> list[str]:
    root = ET.fromstring(xmp.read_bytes())
    return [li.text or "" for subject in root.iter(DC_SUBJECT) for li in subject.iter(RDF_LI)]


def test_hostile_answers_are_published_safely_or_recorded_as_failures(tmp_path, fake_deepva: FakeDeepVA, daemon_factory):
    for name, (scenario, _) in SCENARIOS.items():
        fake_deepva.scenarios[name] = scenario
    watch = tmp_path / "watch"
    watch.mkdir()
    config = write_config(tmp_path, fake_deepva.base_url, [watch], max_active_jobs=4)
    before = snapshot(tmp_path)
    for name in SCENARIOS:
        shutil.copy(FIXTURES / "sample.jpg", watch / f"{name}--1.jpg")
    daemon = daemon_factory(config)

    rows = rows_when_final(tmp_path / "ledger.sqlite3", len(SCENARIOS), 120)
    assert daemon.process is not None and daemon.process.poll() is None, "the daemon must survive every answer"
    peak_kib = peak_rss_kib(daemon.process.pid)
    log = daemon.log_text()
    assert daemon.stop() == 0, log

    by_scenario = {row["relpath"].split("--")[0]: row for row in rows}
    for name, (_, allowed) in SCENARIOS.items():
        row = by_scenario[name]
        assert row["state"] in allowed, (name, row["state"], row["last_error"])
        if row["state"] == "failed":
            assert row["last_error"], f"{name}: a failure must say why"
            assert "internal error" not in row["last_error"], f"{name}: {row['last_error']}"
        if row["state"] == "published":
            json.loads(Path(row["json_path"]).read_text(encoding="utf-8"))  # strict JSON
            ET.fromstring(Path(row["xmp_path"]).read_bytes())  # well-formed XML
    assert '"step_crashed"' not in log and "Traceback" not in log, log[-3000:]
    assert by_scenario["nested"]["last_error"] and "JSON" in by_scenario["nested"]["last_error"]

    subjects = _subjects(Path(by_scenario["markup"]["xmp_path"]))
    assert set(MARKUP_LABELS) <= set(subjects), subjects
    assert "<b>]]></b>&lt;" in json.loads(Path(by_scenario["markup"]["json_path"]).read_text())["detailed_results"][0]["label"]
    assert set(ESCAPES) <= set(_subjects(Path(by_scenario["escape"]["xmp_path"])))

    # nothing was written anywhere but the watched folder (sidecars) and the daemon's own files
    allowed_new = {str(tmp_path / name) for name in ("ledger.sqlite3", "ledger.sqlite3-wal", "ledger.sqlite3-shm",
                                                     "ledger.sqlite3.lock", "daemon-0.log", "api-key", "config.yaml")}
    created = snapshot(tmp_path) - before
    outside = {path for path in created if not path.startswith(str(watch) + "/") and path not in allowed_new}
    assert not outside, f"written outside the sidecar locations: {sorted(outside)}"
    inside = sorted(Path(path).name for path in created if path.startswith(str(watch) + "/"))
    for name in inside:
        assert name.endswith((".jpg", ".jpg.xmp", ".jpg.deepva.json")), name
    assert not any(Path("/tmp").glob("escaped*")), "a sidecar reached /tmp"
    # a 50 MB summary is handled with memory to spare (the whole job, parsed, is a few hundred MB at most)
    print(f"daemon peak RSS {peak_kib} KiB; big: {by_scenario['big']['state']}")
    assert peak_kib < 1_500_000, f"peak RSS {peak_kib} KiB"
