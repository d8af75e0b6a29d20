"""``assets``: the ledger's rows, filtered by path, state, folder and age, newest first.

Paths may be globs (``fnmatch``, where ``*`` also crosses ``/``). An absolute one is matched against the file's full
path; a relative one against the path below the current directory when that lies in a watched folder, otherwise
against the path inside each watched folder (``news/**``). A path without wildcards also names everything below it.
"""

from __future__ import annotations

import argparse
import heapq
import os
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Iterable

from deepva_watch.commands.common import (
    EXIT_OK, UsageError, emit_json, human_age, load, locate, open_ledger,
)
from deepva_watch.config import Config
from deepva_watch.flow import folder_key
from deepva_watch.ledger import Asset, Ledger
from deepva_watch.service.status import asset_json
from deepva_watch.watch.discover import latest_in_order

#: Paths per ledger query when a glob or a sub-folder picked them (well inside SQLite's limit on parameters).
CHUNK = 500
_MAGIC = frozenset("*?[")


@dataclass(frozen=True)
class Pattern:
    """One path or glob as the operator typed it, made absolute (``whole``) or kept relative to each folder."""

    given: str
    text: str
    whole: bool

    @property
    def literal(self) -> bool:
        return not _MAGIC.intersection(self.text)

    def matches(self, folder: str, relpath: str) -> bool:
        path = f"{folder.rstrip('/')}/{relpath}" if self.whole else relpath
        if self.literal:  # a plain path names a file, or a folder and everything in it
            return path == self.text or path.startswith(self.text.rstrip("/") + "/")
        return fnmatchcase(path, self.text)

    def may_reach(self, folder: str) -> bool:
        """Could anything in ``folder`` match? Only an absolute pattern can miss every folder."""
        if not self.whole:
            return True
        head = self.text
        for index, char in enumerate(self.text):
            if char in _MAGIC:
                head = self.text[:index]
                break
        inside = folder.rstrip("/") + "/"
        return inside.startswith(head) or head.startswith(inside) or head.rstrip("/") == folder.rstrip("/")


@dataclass(frozen=True)
class Scope:
    """``--folder``: a watched folder (``below`` empty) or a folder inside one."""

    folder: str
    below: str

    def holds(self, relpath: str) -> bool:
        return not self.below or relpath.startswith(self.below + "/")


def run(args: argparse.Namespace) -> int:
    config = load(args)
    scope = folder_scope(config, args.folder) if args.folder else None
    ledger = open_ledger(config, readonly=True)
    patterns = [pattern(config, given) for given in args.paths]
    known = sorted(set(map(folder_key, config.folders)) | {folder for folder, _ in ledger.count_by_folder_and_state()})
    for each in patterns:
        if not any(each.may_reach(folder) for folder in known):
            raise UsageError(f"{each.given} is not inside any watched folder")
    now = time.time()
    filters: dict[str, Any] = {
        "states": args.state or (),
        "created_before": now - args.older_than if args.older_than is not None else None,
        "created_after": now - args.newer_than if args.newer_than is not None else None,
    }
    if patterns or (scope and scope.below):
        folders = [scope.folder] if scope else known
        rows = _picked(ledger, folders, scope, patterns, filters, args.limit)
    else:
        rows = ledger.query(folder=scope.folder if scope else None, limit=args.limit, **filters)
    if args.json:
        emit_json({"assets": [asset_json(asset, now) for asset in rows], "limit": args.limit})
        return EXIT_OK
    for asset in rows:
        error = f"  {asset.last_error}" if asset.last_error else ""
        print(f"{asset.state:<11} {human_age(now - asset.created_at):>6}  {asset.folder}/{asset.relpath}{error}")
    if len(rows) == args.limit:
        print(f"(first {args.limit}; raise --limit to see more)")
    return EXIT_OK


def folder_scope(config: Config, given: str) -> Scope:
    where = locate(config, given, folder_itself=True)
    if where is None:
        watched = ", ".join(folder_key(folder) for folder in config.folders)
        raise UsageError(f"--folder {given} is not a watched folder or inside one (watched: {watched})")
    return Scope(where.folder, where.relpath)


def pattern(config: Config, given: str) -> Pattern:
    """Absolute patterns name full paths; relative ones start at the current directory when it is in a watched folder
    (like every path the commands take), else in each watched folder."""
    if os.path.isabs(given):
        return Pattern(given, _in_folder_terms(config, os.path.normpath(given)), True)
    here = locate(config, os.getcwd(), folder_itself=True)
    if here is None:
        return Pattern(given, os.path.normpath(given), False)
    return Pattern(given, os.path.normpath(os.path.join(here.folder, here.relpath, given)), True)


def _in_folder_terms(config: Config, path: str) -> str:
    """A path typed through a folder's resolved location (``/mnt/nas/in`` for ``/srv/in``), as the ledger names it."""
    for folder in config.folders:
        key = folder_key(folder).rstrip("/")
        try:
            real = str(folder.path.resolve()).rstrip("/")
        except OSError:
            continue
        if real != key and (path == real or path.startswith(real + "/")):
            return key + path[len(real):]
    return path


def _picked(
    ledger: Ledger, folders: Iterable[str], scope: Scope | None, patterns: list[Pattern], filters: dict[str, Any],
    limit: int,
) -> list[Asset]:
    """The newest ``limit`` rows of the paths that match, without holding the whole ledger in memory.

    Paths are chosen from each folder's path list (read a page at a time), then their rows are read in chunks, each
    chunk already cut to ``limit`` by the ledger.
    """
    newest: list[Asset] = []
    for folder in folders:
        relpaths = [relpath for relpath, *_ in latest_in_order(ledger, folder)
                    if (scope is None or scope.holds(relpath))
                    and (not patterns or any(each.matches(folder, relpath) for each in patterns))]
        for start in range(0, len(relpaths), CHUNK):
            rows = ledger.query(folder=folder, relpaths=relpaths[start:start + CHUNK], limit=limit, **filters)
            newest = heapq.nlargest(limit, [*newest, *rows], key=lambda asset: asset.id)
    return newest
