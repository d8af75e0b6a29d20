"""``status``: what the ledger holds, what waits longest, what failed lately, and whether DeepVA answers."""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from typing import Any

from deepva_watch.commands.common import EXIT_OK, asset_json, emit_json, human_age, iso, load, open_ledger
from deepva_watch.config import Config, host_port
from deepva_watch.states import FINAL

RECENT_ERRORS = 10
OVERDUE_SHOWN = 10
HEALTHZ_TIMEOUT_SECONDS = 3.0


def run(args: argparse.Namespace) -> int:
    config = load(args)
    ledger = open_ledger(config, readonly=True)
    now = time.time()
    by_folder: dict[str, dict[str, int]] = {}
    totals: dict[str, int] = {}
    for (folder, state), count in sorted(ledger.count_by_folder_and_state().items()):
        by_folder.setdefault(folder, {})[state] = count
        totals[state] = totals.get(state, 0) + count
    oldest = ledger.oldest_waiting()
    errors = ledger.recent_errors(RECENT_ERRORS)
    report: dict[str, Any] = {
        "ledger": str(config.ledger),
        "folders": by_folder,
        "totals": totals,
        "backlog": sum(count for state, count in totals.items() if state not in FINAL),
        "oldest_waiting": asset_json(oldest, now) if oldest else None,
        "recent_errors": [asset_json(asset, now) for asset in errors],
        "overdue_jobs": [{**asset_json(asset, now), "job_running_seconds": round(now - (asset.submitted_at or now))}
                         for asset in ledger.overdue_jobs(now - config.overdue_job_seconds, OVERDUE_SHOWN)],
        "api": api_health(config, errors),
    }
    if args.json:
        emit_json(report)
    else:
        _print(report)
    return EXIT_OK


def api_health(config: Config, errors: list[Any]) -> dict[str, Any]:
    """Ask the running daemon (/healthz) when it has an endpoint; otherwise say what the ledger's retries suggest."""
    if config.metrics.listen:
        host, port = host_port(config.metrics.listen)
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=HEALTHZ_TIMEOUT_SECONDS) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = json.loads(error.read() or b"{}")
        except (OSError, ValueError) as error:
            return {"source": url, "reachable": False, "detail": f"the daemon's endpoint did not answer: {error}"}
        return {"source": url, "reachable": True, "healthy": bool(body.get("healthy")), "status": body.get("status"),
                "reasons": body.get("reasons", []), "warnings": body.get("warnings", [])}
    retrying = [asset for asset in errors if asset.state not in FINAL]
    latest = retrying[0] if retrying else None
    return {
        "source": "ledger",
        "detail": "metrics.listen is not set: only the ledger's retries are known",
        "retrying": len(retrying),
        "last_error": latest.last_error if latest else None,
        "last_error_at": iso(latest.updated_at) if latest else None,
    }


def _print(report: dict[str, Any]) -> None:
    print(f"ledger {report['ledger']}: {report['backlog']} file(s) not finished")
    for folder, states in report["folders"].items():
        print(folder)
        for state, count in states.items():
            print(f"  {state:<12} {count}")
    oldest = report["oldest_waiting"]
    if oldest:
        print(f"oldest waiting: {oldest['folder']}/{oldest['path']} ({oldest['state']}, {human_age(oldest['age_seconds'])})")
    if report["overdue_jobs"]:
        print("overdue jobs (DeepVA has not finished them):")
        for job in report["overdue_jobs"]:
            print(f"  {job['folder']}/{job['path']}: job {job['job_id']} running for "
                  f"{human_age(job['job_running_seconds'])} ({job['state']})")
    if report["recent_errors"]:
        print("recent errors:")
        for error in report["recent_errors"]:
            print(f"  {error['updated_at']}  {error['state']:<10} {error['folder']}/{error['path']}: {error['last_error']}")
    api = report["api"]
    if api["source"] == "ledger":
        print(f"API: {api['retrying']} file(s) retrying; last error: {api['last_error'] or 'none'} ({api['detail']})")
    elif not api["reachable"]:
        print(f"API: unknown — {api['detail']}")
    else:
        if not api["healthy"]:
            print("health: UNHEALTHY — " + "; ".join(api["reasons"]))
        elif api["warnings"]:
            print("health: DEGRADED — " + "; ".join(api["warnings"]))
        else:
            print("health: ok")
