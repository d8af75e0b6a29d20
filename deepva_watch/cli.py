"""The commands an operator types: ``run``, ``check-config``, the operator commands (:mod:`.commands`), ``emulator``.

Exit codes, the same for every command (``EXIT_CODES``, shown by ``--help``): 0 success, 1 runtime failure, 2 bad
configuration or usage (nothing was started), 141 the reader of stdout went away (``| head``).
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from types import FrameType
from typing import Sequence

import structlog

from deepva_watch import __version__, log
from deepva_watch.commands import add_operator_commands
from deepva_watch.config import Config, ConfigError, load_config, permission_warnings, resolve_api_key

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
#: What a shell reports for a program killed by SIGPIPE (128 + 13), as ``yes | head`` does: with ``set -o pipefail`` a
#: script sees that the output was cut short.
EXIT_PIPE = 141
DEFAULT_CONFIG = Path("/etc/deepva-watch/config.yaml")
EXIT_CODES = """\
exit codes:
  0    done; status: the daemon is healthy or degraded, or metrics.listen is not set (health unknown)
  1    a runtime failure: not found, not changed, a check failed; status: the daemon is unhealthy or does not answer
  2    bad config or usage: a config error, an unknown option, a folder or path that is not watched
  141  the reader of the output went away (| head): output stopped early, nothing else went wrong"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepva-watch", description="Watch folders, analyse media with DeepVA, write sidecars.",
                                     epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"deepva-watch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        # raw, so the exit codes keep their table; the description is wrapped here instead
        command = commands.add_parser(name, help=help_text, description=textwrap.fill(help_text, 80), epilog=EXIT_CODES,
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
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
        code = _dispatch(args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is noticed while we can still handle it
    except BrokenPipeError:
        return _reader_gone()
    return code


def _dispatch(args: argparse.Namespace) -> int:
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


def _reader_gone() -> int:
    """The reader of stdout closed it (``deepva-watch assets | head -1``): stop quietly, as ``head`` expects.

    Python ignores SIGPIPE, so the closed pipe arrives as BrokenPipeError. What is still buffered would raise again
    when the interpreter flushes stdout on exit, so stdout is pointed at /dev/null first (the recipe in the Python
    documentation of :mod:`signal`).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return EXIT_PIPE


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
    except ConfigError as error:  # the ledger's password cannot be read
        print(f"deepva-watch: config error: {error}", file=sys.stderr)
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
