"""Operator commands that read (and, for retry/reprocess/forget, carefully change) the ledger while the daemon runs.

Each command registers here with its arguments and a ``handler``; ``cli`` calls the handler with the parsed arguments
and turns a :class:`~deepva_watch.config.ConfigError` into exit code 2. Every command has ``--json``, printing one JSON
document on stdout (logs go to stderr), so scripts and monitoring can read the same answers people do. Exit codes are
the same everywhere (``cli.EXIT_CODES``): 0 done, 1 failed or not found, 2 bad config or usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from deepva_watch.commands.common import EXIT_CONFIG, EXIT_FAILURE, CommandError, UsageError, emit_json, parse_age
from deepva_watch.states import ALL

AddCommand = Callable[[str, str], argparse.ArgumentParser]
Handler = Callable[[argparse.Namespace], int]


def add_operator_commands(commands: Any, with_config: AddCommand) -> None:
    from deepva_watch.commands import assets, doctor, plan, requeue, show, status

    def command(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        parser = with_config(name, help_text)
        parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
        parser.set_defaults(handler=_reporting_errors(handler))
        return parser

    command("status", "Files per state and folder, the oldest waiting file, recent errors and the daemon's health "
            "(exit code 1 when /healthz on metrics.listen is unhealthy or does not answer).", status.run)

    story = command("show", "One file's whole story: every version, each step with its time and duration, its DeepVA "
                    "job and sidecars.", show.run)
    story.add_argument("target", metavar="PATH|ASSET_ID", help="a file (absolute, or relative to the current directory) "
                       "or an asset id (dvw-…)")

    listing = command("assets", "List files in the ledger, newest first, filtered by path, state, folder and age.",
                      assets.run)
    listing.add_argument("paths", nargs="*", metavar="PATH", help="files, folders or globs ('*' also crosses '/'; quote "
                         "them): absolute, or relative to the current directory when it is in a watched folder, "
                         "else to each watched folder ('news/**')")
    listing.add_argument("--state", action="append", choices=[str(state) for state in ALL], help="only this state (repeat for several)")
    listing.add_argument("--folder", help="only this watched folder, or a folder inside one")
    listing.add_argument("--older-than", type=parse_age, metavar="AGE", help="first seen at least this long ago (90s, 15m, 2h, 3d)")
    listing.add_argument("--newer-than", type=parse_age, metavar="AGE", help="first seen at most this long ago")
    listing.add_argument("--limit", type=int, default=200, help="at most this many rows (default 200)")

    retry = command("retry", "Put failed files back into the pipeline at the step that failed: all of them, or the given paths.",
                    requeue.retry)
    retry.add_argument("paths", nargs="*", metavar="PATH", help="files to retry (default: every failed file)")
    retry.add_argument("--limit", type=int, default=10000, help="at most this many failed files (default 10000)")

    again = command("reprocess", "Analyse files again with a new DeepVA job, even if their results were published.",
                    requeue.reprocess)
    again.add_argument("paths", nargs="+", metavar="PATH")

    forget = command("forget", "Remove files from the ledger; a file still in its folder is then found and processed "
                     "as new on the next scan.", requeue.forget)
    forget.add_argument("paths", nargs="+", metavar="PATH")

    check = command("doctor", "Check everything the service needs (config, API and key, folders, file systems, inotify, "
                    "ledger, disk) and print a fix for each problem.", doctor.run)
    check.add_argument("--key-file", type=Path, help="API key file to test (the service itself gets the key as a credential)")

    command("plan", "What the config would hand to DeepVA, before it does: files, bytes and minutes of video per "
            "folder and in total, and what is not submitted (existing rule, ledger, sidecars). No API call, no ledger "
            "write.", plan.run)


def _reporting_errors(handler: Handler) -> Handler:
    """A :class:`CommandError` is the operator's to fix: one line (or one JSON document), exit code 1 (2 for a
    :class:`UsageError`), no traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except CommandError as error:
            if getattr(args, "json", False):
                emit_json({"error": str(error)})
            else:
                print(f"deepva-watch {args.command}: {error}", file=sys.stderr)
            return EXIT_CONFIG if isinstance(error, UsageError) else EXIT_FAILURE

    return run
