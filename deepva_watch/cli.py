"""The commands an operator types: ``run``, ``check-config``, ``status``, ``emulator``.

Exit codes: 0 success, 1 runtime failure, 2 bad configuration or usage (nothing was started).
"""

from __future__ import annotations

import argparse
import faulthandler
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Sequence

import structlog

from deepva_watch import __version__, log
from deepva_watch.commands import add_operator_commands
from deepva_watch.config import Config, ConfigError, load_config, permission_warnings, resolve_api_key

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
DEFAULT_CONFIG = Path("/etc/deepva-watch/config.yaml")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepva-watch", description="Watch folders, analyse media with DeepVA, write sidecars.")
    parser.add_argument("--version", action="version", version=f"deepva-watch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help=f"config file (default {DEFAULT_CONFIG})")
        command.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="overrides log_level")
        return command

    with_config("run", "Run the daemon until SIGINT or SIGTERM.")
    with_config("check-config", "Validate the config file and find the API key; start nothing.")
    commands.add_parser("emulator", help="Run the DeepVA-compatible emulator (for tests and demos).", add_help=False)
    add_operator_commands(commands, with_config)
    return parser


def _load(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    log.configure(args.log_level or config.log_level)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulator"]:
        from deepva_watch.emulator.cli import main as emulator_main

        return emulator_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-config":
            return _check_config(args)
        if args.command == "run":
            return _run(args)
        return int(args.handler(args))
    except ConfigError as error:
        for line in error.lines:
            print(f"deepva-watch: config error: {line}", file=sys.stderr)
        return EXIT_CONFIG


def _check_config(args: argparse.Namespace) -> int:
    from deepva_watch.sources import describe_source
    from deepva_watch.deepva.webhook import load_secret

    config = load_config(args.config)
    resolve_api_key(config.api)
    if config.webhook.listen:
        load_secret(config.webhook)
    print(f"{args.config}: OK — {len(config.folders)} folder(s), API {config.api.url}, ledger {config.ledger}")
    for index, folder in enumerate(config.folders):
        print(f"  folders[{index}]: {folder.path}: modules {', '.join(sorted(folder.modules))}; "
              f"settle {folder.settle_seconds:g}s; watch {folder.watch}")
        print(f"  folders[{index}]: {describe_source(folder)}")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from deepva_watch.daemon import Daemon
    from deepva_watch.deepva import client_for
    from deepva_watch.ledger import LedgerError

    config = _load(args)
    key = resolve_api_key(config.api)
    log.register_secret(key.reveal())
    logger = structlog.get_logger("deepva_watch.cli")
    for warning in permission_warnings(args.config, config):
        logger.warning("insecure_permissions", note=warning)
    client = client_for(config.api, key.reveal())
    try:
        daemon = Daemon(config, client, config_path=args.config)
    except LedgerError as error:  # held by another daemon, corrupt, newer, or not a file: one line, nothing started
        print(f"deepva-watch: ledger error: {error}", file=sys.stderr)
        client.close()
        return EXIT_CONFIG
    stops = 0

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stops
        stops += 1
        if stops > 1:  # a second signal means "now": the ledger is consistent at every commit, so this is safe
            raise SystemExit(EXIT_FAILURE)
        daemon.request_stop()

    def on_reload(signum: int, _frame: FrameType | None) -> None:
        daemon.request_reload()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_reload)
    _enable_stack_dumps()
    logger.info("starting", version=__version__, folders=len(config.folders), api=config.api.url, ledger=str(config.ledger))
    started = time.monotonic()
    try:
        daemon.run()
    except OSError as error:  # a listen address in use, a folder that vanished at start: say so, no traceback
        logger.error("cannot_run", error=f"{error.strerror or error} ({error.filename or ''})")
        return EXIT_FAILURE
    finally:
        client.close()
    logger.info("exiting", uptime_s=round(time.monotonic() - started, 1))
    return EXIT_OK


def _enable_stack_dumps() -> None:
    """Every thread's stack to stderr (the journal) on SIGUSR1, and on a crash in C code.

    Written by the interpreter's C layer, not by Python code, so it still works when the process is wedged: a service
    that stopped moving is explained with ``systemctl kill -s USR1 deepva-watch`` before it is restarted.
    """
    try:
        faulthandler.enable(all_threads=True)
        faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)
    except (OSError, ValueError):  # stderr is no real file (embedded runs): only the dumps are missing
        pass


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
