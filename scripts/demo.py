"""The demo behind ./scripts/demo: emulator and daemon as real processes, the sample media dropped into a folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ["sample.jpg", "portrait.jpg", "sample.png", "sample.mp4", "sample.mpg", "sample.mxf", "sample.mov"]
FINAL = {"published", "rejected", "failed", "gone"}
TIMEOUT_SECONDS = 90


def start_emulator(run: Path, key_file: Path) -> tuple[subprocess.Popen[str], str]:
    log = open(run / "emulator.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "deepva_watch", "emulator", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(run / "emulator-data"), "--key-file", str(key_file), "--processing-time", "1.5"],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"(http://\S+/api/v1)", line)
    if not match:
        raise SystemExit(f"the emulator did not start; see {run / 'emulator.log'}")
    return process, match.group(1)


def write_config(run: Path, api_url: str, key_file: Path, watch: Path) -> Path:
    config = run / "config.yaml"
    config.write_text(
        f"""api:
  url: {api_url}
  key_file: {key_file}
ledger: {run / 'ledger.sqlite3'}
poll_interval_seconds: 0.5
folders:
  - path: {watch}
    settle_seconds: 1
    modules:
      face_recognition: {{model: celebrities}}
      object_scene_recognition: {{model: general-c}}
      landmark_recognition: {{}}
      text_recognition: {{}}
"""
    )
    config.chmod(0o600)  # it says where the key is sent: the daemon warns about a config others may read
    return config


def ledger_rows(path: Path) -> list[sqlite3.Row]:
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return list(conn.execute("SELECT * FROM assets ORDER BY relpath"))
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def main() -> int:
    run = ROOT / "demo-run"
    shutil.rmtree(run, ignore_errors=True)
    watch = run / "watch"
    watch.mkdir(parents=True)
    key_file = run / "api-key"
    key_file.write_text("demo-key-" + os.urandom(8).hex() + "\n")
    key_file.chmod(0o600)

    emulator, api_url = start_emulator(run, key_file)
    print(f"emulator: {api_url} (a local stand-in for DeepVA)")
    config = write_config(run, api_url, key_file, watch)
    daemon_log = open(run / "daemon.log", "w")
    daemon = subprocess.Popen([sys.executable, "-m", "deepva_watch", "run", "-c", str(config)], stdout=daemon_log,
                              stderr=subprocess.STDOUT)
    print(f"daemon:   watching {watch}  (log: {run / 'daemon.log'})")
    ok = False
    reason = ""
    rows: list[sqlite3.Row] = []
    try:
        time.sleep(1.0)
        for name in SAMPLES:
            shutil.copy(ROOT / "tests" / "fixtures" / "media" / name, watch / name)
        print(f"dropped:  {', '.join(SAMPLES)}")
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            rows = ledger_rows(run / "ledger.sqlite3")
            if len(rows) == len(SAMPLES) and all(row["state"] in FINAL for row in rows):
                break
            if daemon.poll() is not None:
                break
            time.sleep(0.25)
        print()
        for row in rows:
            print(f"{row['relpath']}  [{row['state']}]  job {row['job_id']}")
            if row["json_path"]:
                sidecar = json.loads(Path(row["json_path"]).read_text(encoding="utf-8"))
                labels = sorted({item["label"] for source in sidecar["summary"] for item in source["items"]})
                print(f"    labels: {', '.join(labels) or '(none)'}")
            print(f"    xmp:    {row['xmp_path']}")
            print(f"    json:   {row['json_path']}")
            if row["last_error"] and row["state"] != "published":
                print(f"    error:  {row['last_error']}")
        ok = len(rows) == len(SAMPLES) and all(row["state"] == "published" for row in rows)
        if ok and shutil.which("exiftool"):
            first_image = next(row["xmp_path"] for row in rows if row["relpath"] == "sample.jpg")
            first_video = next(row["xmp_path"] for row in rows if row["relpath"] == "sample.mxf")
            for xmp in (first_image, first_video):
                print(f"\nexiftool -XMP:all {Path(xmp).name}:")
                subprocess.run(["exiftool", "-G1", "-XMP:all", xmp], check=False)
        if not ok:
            reason = why_not_published(rows, daemon.poll())
    finally:
        daemon.send_signal(signal.SIGTERM)
        stopped = daemon.wait(timeout=60)
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(timeout=30)
    if stopped != 0 and ok:
        reason = f"the daemon exited with code {stopped} when asked to stop"
        ok = False
    if ok:
        print("\ndemo passed: every sample was published")
        return 0
    report_failure(run, rows, reason)
    return 1


def why_not_published(rows: list[sqlite3.Row], daemon_exit: int | None) -> str:
    """The reason the demo failed, in one sentence."""
    if daemon_exit is not None:
        return f"the daemon exited with code {daemon_exit} before the samples were published"
    states = {row["relpath"]: row["state"] for row in rows}
    unseen = [name for name in SAMPLES if name not in states]
    if unseen:
        return (f"{len(unseen)} sample(s) were never discovered within {TIMEOUT_SECONDS} s ({', '.join(unseen)}): "
                f"the daemon did not see them arrive")
    ended = [row for row in rows if row["state"] in FINAL and row["state"] != "published"]
    if ended:
        return (f"{len(ended)} sample(s) ended {ended[0]['state']}; the first: {ended[0]['relpath']}: "
                f"{ended[0]['last_error'] or 'no error recorded'}")
    waiting = sorted({row["state"] for row in rows if row["state"] not in FINAL})
    return f"samples were still {', '.join(waiting)} after {TIMEOUT_SECONDS} s"


def report_failure(run: Path, rows: list[sqlite3.Row], reason: str) -> None:
    """Every sample's state, the last warnings and errors of both logs, and the reason."""
    states = {row["relpath"]: row for row in rows}
    print("\nstate of each sample:", file=sys.stderr)
    for name in SAMPLES:
        row = states.get(name)
        detail = f"{row['state']}" + (f" ({row['last_error']})" if row["last_error"] else "") if row else "not discovered"
        print(f"  {name:<14} {detail}", file=sys.stderr)
    for log_name in ("daemon.log", "emulator.log"):
        print(f"\nlast warnings and errors in {run / log_name}:", file=sys.stderr)
        for line in last_problems(run / log_name):
            print(f"  {line}", file=sys.stderr)
    print(f"\ndemo FAILED: {reason}", file=sys.stderr)


def last_problems(path: Path, count: int = 10) -> list[str]:
    """The last lines at warning level or worse (or the last lines at all, if none is marked)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ["(no log)"]
    marked = [line for line in lines if re.search(r'"level": "(warning|error|critical)"|WARNING|ERROR|Traceback', line)]
    return (marked or lines)[-count:] or ["(empty)"]


if __name__ == "__main__":
    raise SystemExit(main())
