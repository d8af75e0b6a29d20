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
    try:
        time.sleep(1.0)
        for name in SAMPLES:
            shutil.copy(ROOT / "tests" / "fixtures" / "media" / name, watch / name)
        print(f"dropped:  {', '.join(SAMPLES)}")
        deadline = time.monotonic() + TIMEOUT_SECONDS
        rows: list[sqlite3.Row] = []
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
    finally:
        daemon.send_signal(signal.SIGTERM)
        stopped = daemon.wait(timeout=60)
        emulator.send_signal(signal.SIGTERM)
        emulator.wait(timeout=30)
    if stopped != 0:
        print(f"the daemon exited with {stopped}; see {run / 'daemon.log'}", file=sys.stderr)
        ok = False
    print("\ndemo", "passed: every sample was published" if ok else "FAILED: see the states above and the logs")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
