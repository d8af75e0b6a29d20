"""What every operator command shares: loading the config, opening the ledger, naming files, printing results."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from deepva_watch import log
from deepva_watch.config import AGE_UNITS, Config, ConfigError, load_config, resolve_ledger_password
from deepva_watch.flow import folder_key
from deepva_watch.ledger import Ledger, LedgerError
from deepva_watch.ledger import open_ledger as open_ledger_file

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


class CommandError(Exception):
    """Something the operator must fix before the command can run (no ledger yet, a path outside every folder)."""


class UsageError(CommandError):
    """The command was asked something it cannot mean (a folder that is not watched): exit code 2, like a bad option."""


def load(args: argparse.Namespace) -> Config:
    """The config, without requiring watched folders to exist: status and cleanup must work while a share is down.

    Logs go to stderr (warnings and worse unless ``--log-level`` says otherwise), so they never mix with ``--json``.
    """
    log.configure(args.log_level or "warning", stream=sys.stderr)
    return load_config(args.config, check_paths=False)


def open_ledger(config: Config, *, readonly: bool) -> Ledger:
    """The daemon's ledger. Read-only commands open it read-only, so they can neither change nor lock it."""
    password = None
    if isinstance(config.ledger, Path):
        if not config.ledger.is_file():
            raise CommandError(f"no ledger at {config.ledger} yet: the daemon creates it on its first start")
        become_owner_of(config.ledger)
    else:
        password = ledger_password(config)
    try:
        return open_ledger_file(config.ledger, password=password, readonly=readonly)
    except LedgerError as error:
        raise CommandError(str(error)) from None


def ledger_password(config: Config) -> str | None:
    """The PostgreSQL ledger's password as the config finds it (registered as a secret, so no line shows it)."""
    try:
        secret = resolve_ledger_password(config)
    except ConfigError as error:
        raise CommandError(str(error)) from None
    if secret is None:
        return None
    log.register_secret(secret.reveal())
    return secret.reveal()


def become_owner_of(path: Path) -> None:
    """Run as the ledger's owner when started as root.

    Even a read-only SQLite connection creates the ``-wal`` and ``-shm`` files next to a WAL ledger when they are
    missing (the daemon is stopped). Created by root, they would lock the service user out of its own ledger at the
    next start. Operators type ``sudo deepva-watch status``, so we take the owner's identity before opening anything.
    """
    if os.geteuid() != 0:
        return
    info = path.stat()
    if info.st_uid == 0:
        return
    os.setgroups([])
    os.setgid(info.st_gid)
    os.setuid(info.st_uid)


def human_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def parse_age(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``3d``, ``1w`` → seconds (argparse type)."""
    units = AGE_UNITS
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an age like 90s, 15m, 2h or 3d, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an age of 0 or more, got {text!r}")
    return value * units[unit]


@dataclass(frozen=True)
class LedgerPath:
    """A path as the operator typed it, and as the ledger names it."""

    given: str
    folder: str
    relpath: str


def ledger_path(config: Config, given: str) -> LedgerPath:
    """Find the watched folder holding ``given`` (absolute, or relative to the current directory)."""
    found = locate(config, given)
    if found is None:
        raise CommandError(f"{given} is not inside any watched folder")
    return found


def locate(config: Config, given: str, *, folder_itself: bool = False) -> LedgerPath | None:
    """The watched folder holding ``given``, by its configured path or the path it resolves to (the innermost folder
    when folders nest); with ``folder_itself`` a watched folder names itself, with the relative path ``""``."""
    candidates = {os.path.normpath(os.path.abspath(given))}
    try:
        candidates.add(str(Path(given).resolve()))
    except OSError:
        pass
    best: tuple[str, str, str] | None = None  # (root as matched, folder key, relpath)
    for folder in config.folders:
        key = folder_key(folder)
        roots = {os.path.normpath(key)}
        try:
            roots.add(str(folder.path.resolve()))
        except OSError:
            pass
        for path in candidates:
            for root in roots:
                inside = path.startswith(root.rstrip("/") + "/") or (folder_itself and path == root)
                if inside and (best is None or len(root) > len(best[0])):
                    relpath = Path(path).relative_to(root).as_posix()
                    best = (root, key, "" if relpath == "." else relpath)
    return None if best is None else LedgerPath(given, best[1], best[2])


def emit_json(document: Any, stream: TextIO | None = None) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False), file=stream or sys.stdout)


class Progress:
    """A one-line ``\\r`` counter on stderr for long walks, shown only when stderr is a terminal."""

    def __init__(self, label: str, stream: TextIO | None = None, every: float = 0.2) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.every = every
        self._shown_at = 0.0
        self.count = 0

    def update(self, count: int) -> None:
        self.count = count
        if self.enabled and time.monotonic() - self._shown_at >= self.every:
            self._shown_at = time.monotonic()
            self.stream.write(f"\r{self.label}: {count}")
            self.stream.flush()

    def done(self) -> None:
        if self.enabled and self._shown_at:
            self.stream.write(f"\r{self.label}: {self.count}\n")
            self.stream.flush()
