"""``assets``: the ledger's rows, filtered by state, folder and age, newest first."""

from __future__ import annotations

import argparse
import os
import time

from deepva_watch.commands.common import EXIT_OK, asset_json, emit_json, human_age, load, open_ledger
from deepva_watch.flow import folder_key


def run(args: argparse.Namespace) -> int:
    config = load(args)
    ledger = open_ledger(config, readonly=True)
    now = time.time()
    folder = None
    if args.folder:
        wanted = os.path.normpath(os.path.abspath(args.folder))
        matches = [key for key in map(folder_key, config.folders) if os.path.normpath(key) == wanted]
        folder = matches[0] if matches else wanted
    rows = ledger.query(
        states=args.state or (),
        folder=folder,
        created_before=now - args.older_than if args.older_than is not None else None,
        created_after=now - args.newer_than if args.newer_than is not None else None,
        limit=args.limit,
    )
    if args.json:
        emit_json({"assets": [asset_json(asset, now) for asset in rows], "limit": args.limit})
        return EXIT_OK
    for asset in rows:
        error = f"  {asset.last_error}" if asset.last_error else ""
        print(f"{asset.state:<11} {human_age(now - asset.created_at):>6}  {asset.folder}/{asset.relpath}{error}")
    if len(rows) == args.limit:
        print(f"(first {args.limit}; raise --limit to see more)")
    return EXIT_OK
