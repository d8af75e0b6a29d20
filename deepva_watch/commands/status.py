"""``status``: what the ledger holds, what waits longest, what failed lately, what is uploading right now, which
daemons (nodes) work on the ledger, and whether the daemon is healthy.

The nodes are read from the ledger: on a SQLite ledger the one daemon (none before its first start), on a
PostgreSQL ledger every node that has worked on it, alive, dead (silent for longer than its lease) or left.

The exit code answers the last question for scripts and monitoring: 1 when the daemon's ``/healthz`` (on
``metrics.listen``) says unhealthy or does not answer, 0 when it says ok or degraded. Without ``metrics.listen`` there
is no one to ask: 0, and the report says that health is unknown. Running uploads (bytes sent of the total, rate, time
left) live only in the daemon: they are read from its ``/status.json``, so they too need ``metrics.listen`` (and the
status page, ``metrics.page``, on).
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from typing import Any

from deepva_watch.commands.common import EXIT_FAILURE, EXIT_OK, emit_json, human_age, load, open_ledger
from deepva_watch.config import Config, host_port
from deepva_watch.flow.budget import budget_state
from deepva_watch.ledger import Ledger
from deepva_watch.states import FINAL
from deepva_watch.service.status import asset_json, iso, nodes_json

RECENT_ERRORS = 10
OVERDUE_SHOWN = 10
HEALTHZ_TIMEOUT_SECONDS = 3.0
#: /status.json is read up to this size (it lists the running uploads and recent failures: small).
MAX_STATUS_BYTES = 4 * 1024 * 1024


def run(args: argparse.Namespace) -> int:
    config = load(args)
    ledger = open_ledger(config, readonly=True)
    try:
        report = gather(config, ledger, time.time())
    finally:
        ledger.close()  # a PostgreSQL ledger's pool of connections and its threads end here
    if args.json:
        emit_json(report)
    else:
        _print(report)
    return EXIT_FAILURE if report["health"] in ("unhealthy", "unreachable") else EXIT_OK


def gather(config: Config, ledger: Ledger, now: float) -> dict[str, Any]:
    """Everything the report shows, read from the ledger and the running daemon."""
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
        "budget": budget_json(config, ledger, now),
        "api": api_health(config, errors),
        "uploads": running_uploads(config),
        "nodes": nodes_json(ledger, now),
    }
    report["health"] = health_of(report["api"])
    return report


def budget_json(config: Config, ledger: Ledger, now: float) -> dict[str, Any] | None:
    """Today's spending against the daily caps, and until when work waits if one is reached; None without caps."""
    state = budget_state(config.budget, ledger, now)
    if state is None:
        return None
    return {"video_minutes": round(state.video_minutes, 2), "video_minutes_per_day": config.budget.video_minutes_per_day,
            "images": state.images, "images_per_day": config.budget.images_per_day,
            "reached": state.describe() if state.reached else None}


def health_of(api: dict[str, Any]) -> str:
    """``ok``, ``degraded`` or ``unhealthy`` as /healthz said; ``unreachable`` when it did not answer; ``unknown``
    without ``metrics.listen``."""
    if api["source"] == "ledger":
        return "unknown"
    if not api["reachable"]:
        return "unreachable"
    return str(api["status"] or ("ok" if api["healthy"] else "unhealthy"))


def daemon_url(config: Config, path: str) -> str | None:
    """The URL of ``path`` on the running daemon's ``metrics.listen`` (a wildcard address asked on loopback)."""
    if not config.metrics.listen:
        return None
    host, port = host_port(config.metrics.listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}{path}"


def running_uploads(config: Config) -> list[dict[str, Any]] | None:
    """The uploads under way, as the daemon's /status.json tells them; None when it cannot be asked (no
    ``metrics.listen``, no answer, the page turned off)."""
    url = daemon_url(config, "/status.json")
    if url is None or not config.metrics.page:
        return None
    try:
        with urllib.request.urlopen(url, timeout=HEALTHZ_TIMEOUT_SECONDS) as response:
            body = json.loads(response.read(MAX_STATUS_BYTES))
    except (OSError, ValueError):
        return None
    uploads = body.get("uploads") if isinstance(body, dict) else None
    if not isinstance(uploads, list):
        return None
    keys = ("asset_id", "folder", "path", "sent", "total", "rate", "eta_seconds", "seconds")
    return [{key: upload.get(key) for key in keys} for upload in uploads if isinstance(upload, dict)]


def api_health(config: Config, errors: list[Any]) -> dict[str, Any]:
    """Ask the running daemon (/healthz) when it has an endpoint; otherwise say what the ledger's retries suggest."""
    url = daemon_url(config, "/healthz")
    if url is not None:
        try:
            with urllib.request.urlopen(url, timeout=HEALTHZ_TIMEOUT_SECONDS) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:  # 503 carries the reasons
            raw = error.read()
        except (OSError, ValueError) as error:
            return {"source": url, "reachable": False, "detail": f"the daemon's endpoint did not answer: {error}"}
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict) or "healthy" not in body:
            return {"source": url, "reachable": False,
                    "detail": f"{url} answered, but not as deepva-watch's /healthz (another program on that port?)"}
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
    budget = report["budget"]
    if budget:
        caps = [f"{budget['images']} of {budget['images_per_day']} images"] if budget["images_per_day"] else []
        if budget["video_minutes_per_day"]:
            caps.append(f"{budget['video_minutes']:.1f} of {budget['video_minutes_per_day']:g} video minutes")
        print(f"budget today: {', '.join(caps)}" + (f"; {budget['reached']}" if budget["reached"] else ""))
    if report["uploads"]:
        print("uploading:")
        for upload in report["uploads"]:
            print(f"  {upload['folder']}/{upload['path']}: {upload_progress(upload)}")
    if report["recent_errors"]:
        print("recent errors:")
        for error in report["recent_errors"]:
            print(f"  {error['updated_at']}  {error['state']:<10} {error['folder']}/{error['path']}: {error['last_error']}")
    _print_nodes(report["nodes"])
    api = report["api"]
    if api["source"] == "ledger":
        print(f"API: {api['retrying']} file(s) retrying; last error: {api['last_error'] or 'none'}")
        print("health: unknown — metrics.listen is not set, so there is no /healthz to ask")
    elif not api["reachable"]:
        print(f"health: NO ANSWER — {api['detail']}")
    else:
        if not api["healthy"]:
            print("health: UNHEALTHY — " + "; ".join(api["reasons"]))
        elif api["warnings"]:
            print("health: DEGRADED — " + "; ".join(api["warnings"]))
        else:
            print("health: ok")


def _print_nodes(nodes: list[dict[str, Any]]) -> None:
    if not nodes:
        print("nodes: none (no daemon has joined this ledger yet)")
        return
    alive = sum(1 for node in nodes if node["state"] == "alive")
    print(f"nodes: {alive} of {len(nodes)} alive")
    width = max(len(node["name"]) for node in nodes)
    for node in nodes:
        print(f"  {node['name']:<{width}}  {node['state']:<5}  {node['host']} pid {node['pid']}, "
              f"{heartbeat_age(node['last_beat_seconds_ago'])}, {node['rows_held']} row(s) held")


def heartbeat_age(seconds_ago: float) -> str:
    """``last beat 4s ago``, or for a node whose clock is ahead of this one, ``last beat 2.0m in the future``."""
    if seconds_ago < 0:
        return f"last beat {human_age(-seconds_ago)} in the future (its clock is ahead)"
    return f"last beat {human_age(seconds_ago)} ago"


def upload_progress(upload: dict[str, Any]) -> str:
    """``12.5 of 800.0 MB (2 %), 11.2 MB/s, 1.2m left``."""
    sent, total = upload.get("sent") or 0, upload.get("total") or 0
    share = f" ({100 * sent / total:.0f} %)" if total else ""
    rate = float(upload.get("rate") or 0.0)
    eta = upload.get("eta_seconds")
    left = f", {human_age(float(eta))} left" if isinstance(eta, (int, float)) else ""
    return f"{sent / 1e6:.1f} of {total / 1e6:.1f} MB{share}, {rate / 1e6:.1f} MB/s{left}"
