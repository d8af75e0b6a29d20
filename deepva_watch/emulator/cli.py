"""Running the emulator from a shell: one line on stdout once listening, then serve until SIGINT or SIGTERM.

The key may come from ``--key``, ``--key-file`` or ``DEEPVA_EMULATOR_KEY``, so that it need not appear in a process
listing; without any, the documented demo key is used.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .config import DEFAULT_API_KEY, EmulatorConfig
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
    keys.add_argument("--key", help=f"API key clients must send (also ${KEY_ENVIRONMENT_VARIABLE})")
    keys.add_argument("--key-file", type=Path, help="file whose first line is the API key")
    parser.add_argument(
        "--processing-time", type=float, default=2.0, help="seconds each job processes (default: %(default)s)"
    )
    parser.add_argument(
        "--queue-time", type=float, default=0.0, help="seconds each job waits before processing (default: 0)"
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def resolve_key(arguments: argparse.Namespace) -> str:
    if arguments.key:
        return str(arguments.key)
    if arguments.key_file:
        lines = arguments.key_file.read_text(encoding="utf-8").splitlines()
        if not lines or not lines[0].strip():
            raise ValueError(f"key file {arguments.key_file} is empty")
        return lines[0].strip()
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
