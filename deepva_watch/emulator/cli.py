"""Running the emulator from a shell: one line on stdout once listening, then serve until SIGINT or SIGTERM.

The key may come from ``--key``, ``--key-file`` or ``DEEPVA_EMULATOR_KEY``, so that it need not appear in a process
listing; without any, the documented demo key is used. The webhook secret comes only from a file, for the same reason.

On-prem mode: ``--onprem-root /mnt/media=/srv/test/watched`` (repeatable; UNC prefixes such as ``\\\\nas\\share``
work too). Faults: ``--faults-json FILE`` with the JSON shape documented in :mod:`.faults`; the shorthand flags
(``--fault-rate``, ``--reset-rate``, ``--rate-limit-rate``, ``--latency``, ``--job-failure-rate``, ``--fault-seed``)
override the file's fields. ``--reset-rate`` resets uploads (``POST /api/v1/storage/``) mid-body; ``--fault-rate``
answers any API request with a proxy's 5xx page.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from .config import DEFAULT_API_KEY, DEFAULT_NONCE_HEADER, DEFAULT_SIGNATURE_HEADER, EmulatorConfig
from .service import Emulator

KEY_ENVIRONMENT_VARIABLE = "DEEPVA_EMULATOR_KEY"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepva-watch emulator",
        description="Run a DeepVA-compatible emulator (not the real service) for tests, benchmarks and demos.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one (default: 0)")
    parser.add_argument("--data-dir", type=Path, help="where uploads are kept (default: a temporary directory)")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument(
        "--key",
        help=f"API key clients must send (also ${KEY_ENVIRONMENT_VARIABLE}; default: the demo key {DEFAULT_API_KEY!r})",
    )
    keys.add_argument("--key-file", type=Path, help="file whose first line is the API key")
    parser.add_argument(
        "--processing-time", type=float, default=2.0, help="seconds each job processes (default: %(default)s)"
    )
    parser.add_argument(
        "--queue-time", type=float, default=0.0, help="seconds each job waits before processing (default: 0)"
    )
    parser.add_argument(
        "--video-processing-ratio",
        type=float,
        default=0.0,
        metavar="RATIO",
        help="above 0: a video source processes for its duration times RATIO (1: real time), an image source for "
        "--processing-time, a job for the sum over its sources (default: 0, every job takes --processing-time)",
    )
    parser.add_argument(
        "--onprem-root",
        action="append",
        default=[],
        metavar="SERVER_PREFIX=LOCAL_DIR",
        help="accept local-path sources under SERVER_PREFIX, read from LOCAL_DIR (repeatable; enables on-prem mode)",
    )
    parser.add_argument(
        "--fetch-max-bytes", type=int, default=1 << 30, help="largest loopback URL source fetched (default: 1 GiB)"
    )
    hooks = parser.add_argument_group("webhooks")
    hooks.add_argument("--webhook-secret-file", type=Path, help="file whose first line signs webhooks (enables them)")
    hooks.add_argument("--webhook-signature-header", default=DEFAULT_SIGNATURE_HEADER, help="(default: %(default)s)")
    hooks.add_argument("--webhook-nonce-header", default=DEFAULT_NONCE_HEADER, help="(default: %(default)s)")
    faults = parser.add_argument_group("fault injection (see also POST /_emulator/faults)")
    faults.add_argument("--faults-json", type=Path, help="file holding a fault plan as JSON")
    faults.add_argument("--fault-seed", type=int, help="seed for the fault dice (default: 0)")
    faults.add_argument("--fault-rate", type=float, help="share of API requests answered with a proxy 5xx page")
    faults.add_argument("--reset-rate", type=float, help="share of uploads whose connection is reset mid-body")
    faults.add_argument("--rate-limit-rate", type=float, help="share of API requests answered 429 with Retry-After")
    faults.add_argument("--latency", type=float, help="seconds added to every API request")
    faults.add_argument("--job-failure-rate", type=float, help="share of jobs that end failed with errors")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def parse_onprem_roots(values: list[str]) -> dict[str, Path]:
    roots: dict[str, Path] = {}
    for value in values:
        prefix, separator, local = value.partition("=")
        if not separator or not prefix or not local:
            raise ValueError(f"--onprem-root expects SERVER_PREFIX=LOCAL_DIR, got {value!r}")
        roots[prefix] = Path(local)
    return roots


def read_secret(path: Path) -> str:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].strip():
        raise ValueError(f"secret file {path} is empty")
    return lines[0].strip()


def fault_settings(arguments: argparse.Namespace) -> dict[str, Any]:
    """The JSON file's fields, then the shorthand flags on top."""
    plan: dict[str, Any] = {}
    if arguments.faults_json:
        loaded = json.loads(arguments.faults_json.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise ValueError(f"{arguments.faults_json}: expected a JSON object")
        plan.update(loaded)
    shorthands = {
        "seed": arguments.fault_seed,
        "error_rate": arguments.fault_rate,
        "reset_rate": None if arguments.reset_rate is None else {"POST /api/v1/storage/": arguments.reset_rate},
        "rate_limit_rate": arguments.rate_limit_rate,
        "latency": arguments.latency,
        "job_failure_rate": arguments.job_failure_rate,
    }
    plan.update({name: value for name, value in shorthands.items() if value is not None})
    return plan


def resolve_key(arguments: argparse.Namespace) -> str:
    if arguments.key:
        return str(arguments.key)
    if arguments.key_file:
        lines = arguments.key_file.read_text(encoding="utf-8").splitlines()
        if not lines or not lines[0].strip():
            raise ValueError(f"key file {arguments.key_file} is empty")
        return str(lines[0]).strip()
    return os.environ.get(KEY_ENVIRONMENT_VARIABLE, "").strip() or DEFAULT_API_KEY


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        key = resolve_key(arguments)
        config = EmulatorConfig(
            host=arguments.host,
            port=arguments.port,
            data_dir=arguments.data_dir,
            api_key=key,
            processing_time=arguments.processing_time,
            queue_time=arguments.queue_time,
            video_processing_ratio=arguments.video_processing_ratio,
            onprem_roots=parse_onprem_roots(arguments.onprem_root),
            fetch_max_bytes=arguments.fetch_max_bytes,
            webhook_secret=read_secret(arguments.webhook_secret_file) if arguments.webhook_secret_file else None,
            webhook_signature_header=arguments.webhook_signature_header,
            webhook_nonce_header=arguments.webhook_nonce_header,
            faults=fault_settings(arguments),
        )
    except (OSError, ValueError) as problem:
        parser.error(str(problem))
    logging.basicConfig(
        level=logging.DEBUG if arguments.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    stop_requested = threading.Event()

    def request_stop(signal_number: int, frame: FrameType | None) -> None:
        # Only record the signal here; the main thread does the stopping.
        stop_requested.set()

    previous = {number: signal.signal(number, request_stop) for number in (signal.SIGINT, signal.SIGTERM)}
    emulator = Emulator(config)
    try:
        try:
            emulator.start()
        except OSError as problem:
            print(f"emulator could not listen on {arguments.host}:{arguments.port}: {problem}", file=sys.stderr)
            return 1
        if key == DEFAULT_API_KEY:
            logging.getLogger("deepva_watch.emulator").info("using the default demo key (see --help)")
        print(f"emulator listening on {emulator.base_url}", flush=True)
        while not stop_requested.wait(0.5):
            pass
        return 0
    finally:
        emulator.stop()
        for number, handler in previous.items():
            signal.signal(number, handler)
