#!/usr/bin/env python3
"""Follow deepva-watch's /events feed: print every finished file once, keeping the cursor in a file between runs.

    contrib/events-client.py http://127.0.0.1:9187 /var/lib/mam/deepva-cursor
"""
import json
import sys
import time
import urllib.request
from pathlib import Path

base, cursor_file = sys.argv[1].rstrip("/"), Path(sys.argv[2])
cursor = int(cursor_file.read_text()) if cursor_file.exists() else 0
while True:
    with urllib.request.urlopen(f"{base}/events?after={cursor}&limit=100", timeout=30) as response:
        page = json.load(response)
    for event in page["events"]:
        print(event["outcome"], event["path"], event["job_id"], event["json_path"], flush=True)  # hand it to the MAM
        cursor_file.write_text(str(event["cursor"]))  # after the hand-over: a crash repeats, never skips
    cursor = page["next"]
    if not page["events"]:
        time.sleep(5)
