"""``doctor``: every precondition of a working service, checked one by one, each failure with the fix.

The checks go from the config outwards (key, API, folders, file systems, inotify, ledger, disk), and keep going after
a failure so one run shows everything that is wrong. Nothing is changed: writability is proven by creating and
removing a temporary file, which is the only test that is right for root, read-only mounts and ACLs alike.

A PostgreSQL ledger is checked over the network instead of on disk: the database answers (with the ledger's
password), holds a ledger this version can read (or may have one created), and the clocks agree. Nodes judge each
other alive by heartbeat times each writes with its own clock, so a clock off by more than a third of
``node_lease_seconds`` makes a live node look dead (its files are taken over while it works on them) or a dead one
look alive (its files wait). This machine's clock is compared with the database's; the other nodes' clocks can only be
seen through their heartbeats, and one that lies in the future shows a clock that is ahead.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from deepva_watch import log
from deepva_watch.commands.common import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    CommandError,
    Progress,
    emit_json,
    human_age,
    open_ledger,
)
from deepva_watch.config import (
    ApiConfig,
    Config,
    ConfigError,
    FolderConfig,
    PostgresUrl,
    Secret,
    load_config,
    resolve_api_key,
    resolve_ledger_password,
)
from deepva_watch.ledger.model import Node
from deepva_watch.service.health import ledger_write_problem
from deepva_watch.watch.limits import MAX_USER_WATCHES, PROC, count_folders, watch_limit, watches_in_use
from deepva_watch.watch.mounts import choose_mode, is_remote
from deepva_watch.watch.observer import ObserverFactory, start_observer
from deepva_watch.watch.probe import probe_events

OK, WARN, FAIL = "ok", "warn", "fail"
#: Below this the service soon stops (the ledger and sidecars need room); below the warning level it is time to act.
FREE_FAIL_BYTES = 100 * 1024**2
FREE_WARN_BYTES = 1024**3
#: Share of the inotify watch limit one tree may take before we warn: other programs of the user need watches too.
WATCH_SHARE_WARN = 0.8
API_TIMEOUT_SECONDS = 10.0
POSTGRES_TIMEOUT_SECONDS = 5
#: The largest clock difference the nodes of a PostgreSQL ledger bear, as a share of node_lease_seconds (a node beats
#: every third of its lease); past half of it doctor warns.
CLOCK_SHARE_FAIL = 1 / 3
CLOCK_SHARE_WARN = 1 / 6


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def run(args: argparse.Namespace) -> int:
    log.configure(args.log_level or "error", stream=sys.stderr)
    checks: list[Check] = []
    config = _config_checks(args.config, checks)
    if config is not None:
        checks.extend(_api_checks(config, args.key_file))
        for folder in config.folders:
            checks.extend(folder_checks(folder))
        checks.extend(inotify_checks(config))
        if isinstance(config.ledger, PostgresUrl):
            checks.extend(postgres_checks(config))
        else:
            checks.append(ledger_check(config.ledger))
        checks.extend(disk_checks(config))
    failed = any(check.status == FAIL for check in checks)
    code = EXIT_CONFIG if config is None else EXIT_FAILURE if failed else EXIT_OK
    if args.json:
        emit_json({"ok": not failed, "checks": [check.as_json() for check in checks]})
    else:
        for check in checks:
            mark = {OK: " OK ", WARN: "WARN", FAIL: "FAIL"}[check.status]
            print(f"[{mark}] {check.name}: {check.detail}")
            if check.fix and check.status != OK:
                print(f"       fix: {check.fix}")
        print("all checks passed" if not failed else "some checks failed; see the fixes above")
    return code


def _config_checks(path: Path, checks: list[Check]) -> Config | None:
    fix = f"edit {path}; config.example.yaml documents every key; check with: deepva-watch check-config -c {path}"
    try:
        config = load_config(path, check_paths=False)
    except ConfigError as error:
        checks.append(Check("config", FAIL, str(error), fix))
        return None
    try:
        load_config(path, check_paths=True)
    except ConfigError as error:  # a missing folder: reported, and the other checks still run
        checks.append(Check("config", FAIL, str(error), "create or mount the folder, or fix its path in the config"))
    else:
        checks.append(Check("config", OK, f"{path}: {len(config.folders)} folder(s)"))
    return config


def _api_checks(config: Config, key_file: Path | None) -> Iterator[Check]:
    from deepva_watch.deepva import DeepVAClient, DeepVAError, NotAuthenticated, RetryPolicy, TransportError

    api = config.api if key_file is None else _with_key_file(config, key_file)
    try:
        key: Secret = resolve_api_key(api)
    except ConfigError as error:
        yield Check("api key", FAIL, str(error),
                    "put the key in /etc/deepva-watch/api-key (the service's credential), or pass --key-file when "
                    "running doctor outside the service")
        return
    log.register_secret(key.reveal())
    yield Check("api key", OK, "found")
    client = DeepVAClient(
        api.url, key.reveal(), retry=RetryPolicy(attempts=1),
        timeout=(min(api.connect_timeout_seconds, API_TIMEOUT_SECONDS), min(api.read_timeout_seconds, API_TIMEOUT_SECONDS)),
        verify=str(api.ca_bundle) if api.ca_bundle else True,
    )
    try:
        client.list_jobs(limit=1)
    except NotAuthenticated as error:
        yield Check("api", FAIL, f"{api.url} refused the key ({error.status})",
                    "copy the key again from the DeepVA web app into the key file; then: systemctl restart deepva-watch")
    except TransportError as error:
        yield Check("api", FAIL, f"{api.url} did not answer: {error.reason}",
                    "check api.url, DNS, the firewall and any proxy; try: curl -sS -o /dev/null -w '%{http_code}' " + api.url)
    except DeepVAError as error:
        yield Check("api", FAIL, f"{api.url} answered with an error: {error}", "check api.url: it must end in /api/v1")
    else:
        yield Check("api", OK, f"{api.url} answers and accepts the key")
    finally:
        client.close()


def _with_key_file(config: Config, key_file: Path) -> ApiConfig:
    return dataclasses.replace(config.api, key_file=key_file)


def writable_problem(folder: Path) -> str | None:
    """Why a file cannot be created in ``folder``, found by creating (and removing) one; None when it can."""
    if not folder.exists():
        return f"{folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is not a directory"
    try:
        fd, name = tempfile.mkstemp(prefix=".deepva-watch-doctor-", dir=folder)
    except OSError as error:
        return f"cannot create files in {folder}: {error.strerror}"
    os.close(fd)
    os.unlink(name)
    return None


def folder_checks(folder: FolderConfig, observer_factory: ObserverFactory = start_observer) -> Iterator[Check]:
    name = f"folder {folder.path}"
    if not folder.path.is_dir():
        yield Check(name, FAIL, "does not exist or is not a directory", "create it, mount the share, or fix the path")
        return
    try:
        with os.scandir(folder.path) as entries:
            next(entries, None)
    except OSError as error:
        yield Check(name, FAIL, f"not readable: {error.strerror}",
                    f"give the service user read access, e.g.: setfacl -R -m u:deepva-watch:rX {folder.path}")
        return
    if folder.anchor_file and not (folder.path / folder.anchor_file).exists():
        yield Check(name, WARN, f"anchor file {folder.anchor_file} is missing: the folder would be paused",
                    "mount the share, or create the anchor file on it")
    else:
        yield Check(name, OK, "readable")
    target = folder.sidecars.output_dir or folder.path
    if folder.sidecars.xmp or folder.sidecars.json:
        existing = target
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        problem = writable_problem(existing) if existing.is_dir() or existing == target else f"{existing} is not a directory"
        if problem:
            yield Check(f"sidecars {target}", FAIL, f"not writable: {problem}",
                        f"give the service user write access (setfacl -m u:deepva-watch:rwX {target}), add {target} to "
                        f"ReadWritePaths= (systemctl edit deepva-watch), or set sidecars.output_dir to a writable folder")
        else:
            yield Check(f"sidecars {target}", OK, "writable")
    yield watch_check(folder, observer_factory)


def watch_check(folder: FolderConfig, observer_factory: ObserverFactory = start_observer) -> Check:
    """How the folder is watched, and for events, proof that they arrive: a probe creates and closes a file in a
    temporary folder inside it and waits for both events."""
    name = f"watch {folder.path}"
    choice = choose_mode(folder.watch, folder.path)
    fs = choice.fstype or "unknown"
    if choice.mode == "poll":
        return Check(name, OK, f"file system {fs}: polled ({choice.reason})")
    if choice.fstype and is_remote(choice.fstype):
        return Check(name, WARN,
                     f"{fs} is a network file system but watch is 'events': files written by other machines raise no "
                     "events and are only found by the periodic rescan", "set watch: auto (or poll) for this folder")
    probe = probe_events(folder.path, factory=observer_factory)
    if probe.problem is not None:
        return Check(name, WARN, f"file system {fs}: events, not proven: {probe.problem}",
                     "run doctor as the service user, or give it write access to the folder, to probe events")
    if not probe.delivered:
        missing = " and ".join(what for what, seen in (("create", probe.created), ("close-write", probe.closed))
                               if not seen)
        return Check(name, FAIL, f"file system {fs}: the observer delivered no {missing} event for a probe file",
                     "set watch: poll for this folder (files would otherwise wait for the periodic rescan)")
    return Check(name, OK, f"file system {fs}: events, proven by a probe (create and close-write arrived)")


def inotify_checks(config: Config, limit_file: Path = MAX_USER_WATCHES, proc: Path = PROC) -> Iterator[Check]:
    watched = [folder for folder in config.folders if folder.path.is_dir() and choose_mode(folder.watch, folder.path).mode == "events"]
    if not watched:
        return
    limit = watch_limit(limit_file)
    if limit is None:
        yield Check("inotify", WARN, f"cannot read {limit_file}", "")
        return
    progress = Progress("counting folders to watch")
    needed = 0
    for folder in watched:
        needed += count_folders(folder.path, recursive=folder.recursive, follow_symlinks=folder.follow_symlinks)
        progress.update(needed)
    progress.done()
    in_use = watches_in_use(proc)
    detail = (f"{needed} folder(s) to watch, limit {limit} (fs.inotify.max_user_watches), {in_use} in use by this "
              f"user's other programs")
    new_limit = max(needed * 2, 524288)
    fix = (f"raise the limit: echo fs.inotify.max_user_watches={new_limit} > /etc/sysctl.d/60-deepva-watch.conf && "
           "sysctl --system (or set watch: poll on the biggest folders)")
    if needed > limit - in_use:
        yield Check("inotify", FAIL, detail + ": sub-folders past the limit would go unwatched", fix)
    elif needed > limit * WATCH_SHARE_WARN:
        yield Check("inotify", WARN, detail + ": close to the limit, shared with every other program of the user", fix)
    else:
        yield Check("inotify", OK, detail)


def ledger_check(path: Path) -> Check:
    """Whether the ledger (or the folder it will be created in) can be written, without opening it.

    Opening it with SQLite, even read-only, would create its ``-wal`` and ``-shm`` files as whoever runs doctor
    (usually root) when the daemon is stopped, and lock the service user out; see ``become_owner_of``.
    """
    name = f"ledger {path}"
    fix = (f"the service user must be able to write {path} and {path.parent}: check their owner and mode "
           f"(chown -R deepva-watch: {path.parent}), that the file system is mounted read-write, and the free space")
    if not path.exists():
        existing = path.parent
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        problem = writable_problem(existing)
        if problem:
            return Check(name, FAIL, f"not created yet, and cannot be: {problem}",
                         f"create {path.parent} writable for the service user (the unit's StateDirectory does this)")
        return Check(name, OK, "not created yet; the daemon creates it on its first start")
    problem = ledger_write_problem(path)
    if problem:
        return Check(name, FAIL, f"cannot be written: {problem}", fix)
    return Check(name, OK, "writable")


@dataclass(frozen=True)
class DatabaseFacts:
    """What one short connection to a PostgreSQL ledger's database found."""

    version: str
    user: str
    schema: str | None
    """Where the daemon would create the ledger: the first schema of the search path that exists."""
    clock_offset: float
    """This machine's clock minus the database's, in seconds (the query's round trip split in two)."""
    round_trip: float
    has_ledger: bool
    may_create: bool
    """Whether the user may create tables where the daemon would create the ledger (the first schema of its path)."""
    may_write: bool
    """Whether the user may read and change the ledger's rows (False too when there is no ledger)."""


def postgres_checks(config: Config, clock: Callable[[], float] = time.time) -> Iterator[Check]:
    """A PostgreSQL ledger: reachable with its password, migrated (it opens read-only), and the clocks of this machine,
    the database and every node within a third of ``node_lease_seconds`` of each other."""
    url = PostgresUrl(config.ledger)
    name = f"ledger {url}"
    try:
        import psycopg
    except ImportError:
        yield Check(name, FAIL, "psycopg is not installed: a PostgreSQL ledger cannot be used",
                    "install the postgres extra: pip install 'deepva-watch[postgres]'")
        return
    try:
        password = resolve_ledger_password(config)
    except ConfigError as error:
        yield Check("ledger password", FAIL, str(error),
                    "put the password in the file ledger_password_file names, readable by the service user only")
        return
    secret = password.reveal() if password is not None else None
    if secret:
        log.register_secret(secret)
    try:
        facts = database_facts(url, secret, clock)
    except psycopg.Error as error:
        yield Check(name, FAIL, f"the database did not let us in: {_one_line(error, secret)}",
                    "check the URL's host, port, database and user, that PostgreSQL listens there (listen_addresses), "
                    "that pg_hba.conf admits this host and user, the firewall, and the password (ledger_password_file, "
                    f"$DEEPVA_WATCH_LEDGER_PASSWORD or a systemd credential); try: psql '{url}' -c 'SELECT 1'")
        return
    yield Check(name, OK, f"reachable as {facts.user} (PostgreSQL {facts.version})")
    nodes: Sequence[Node] | None = None
    if not facts.has_ledger:
        if facts.may_create:
            yield Check("ledger schema", OK, "the database holds no ledger yet; the daemon creates it on its first start")
        else:
            yield Check("ledger schema", FAIL, f"the database holds no ledger yet, and {facts.user} may not create "
                        f"tables in it ({_schema_said(facts.schema)})", "let the user create them, e.g. as the "
                        f"database's owner: GRANT CREATE ON SCHEMA {facts.schema or 'public'} TO {facts.user}")
    else:
        try:
            ledger = open_ledger(config, readonly=True)
        except CommandError as error:
            newer = "newer deepva-watch" in str(error)
            yield Check("ledger schema", FAIL, str(error),
                        "install the deepva-watch version the other nodes run (the newest one wrote the ledger)"
                        if newer else "see the detail, and the daemon's journal: journalctl -u deepva-watch")
        else:
            try:
                nodes = ledger.nodes()
            finally:
                ledger.close()
            if facts.may_write:
                yield Check("ledger schema", OK, "migrated: this version reads it, and the user may write it")
            else:
                yield Check("ledger schema", FAIL, f"{facts.user} may read the ledger but not change its rows",
                            f"as the tables' owner: GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "
                            f"{facts.schema or 'public'} TO {facts.user}")
    margin = config.node_lease_seconds * CLOCK_SHARE_FAIL
    yield clock_check(facts, config.node_lease_seconds)
    if nodes is not None:
        database_now = clock() - facts.clock_offset
        yield node_clocks_check(nodes, database_now, margin)


def database_facts(url: str, password: str | None, clock: Callable[[], float] = time.time) -> DatabaseFacts:
    """Ask the database, in one short read-only transaction, what the ledger checks need; raises psycopg.Error."""
    import psycopg

    with psycopg.connect(url, password=password, connect_timeout=POSTGRES_TIMEOUT_SECONDS) as conn:
        conn.read_only = True
        before = clock()
        database_now = float(_scalar(conn, "SELECT extract(epoch from clock_timestamp())::float8"))
        after = clock()
        has_ledger = bool(_scalar(conn, "SELECT to_regclass('migrations') IS NOT NULL"))
        return DatabaseFacts(
            version=str(_scalar(conn, "SHOW server_version")),
            user=str(_scalar(conn, "SELECT current_user")),
            schema=_scalar(conn, "SELECT current_schema()"),
            clock_offset=(before + after) / 2 - database_now,
            round_trip=after - before,
            has_ledger=has_ledger,
            may_create=bool(_scalar(conn, "SELECT coalesce(has_schema_privilege(current_schema(), 'CREATE'), false)")),
            may_write=has_ledger and bool(_scalar(
                conn, "SELECT to_regclass('assets') IS NOT NULL "
                      "AND has_table_privilege('assets', 'SELECT, INSERT, UPDATE, DELETE')")),
        )


def _schema_said(schema: str | None) -> str:
    return f"schema {schema}" if schema else "no schema of its search_path exists"


def _scalar(conn: Any, sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    return None if row is None else row[0]


def _one_line(error: BaseException, secret: str | None) -> str:
    """The driver's error on one line, never with the password in it."""
    text = "; ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__
    return text.replace(secret, "***") if secret else text


def clock_check(facts: DatabaseFacts, lease_seconds: float) -> Check:
    """This machine's clock against the database's: within a third of the lease, warned of past a sixth."""
    offset = facts.clock_offset
    detail = (f"this machine's clock is {abs(offset):.2f} s {'ahead of' if offset >= 0 else 'behind'} the "
              f"database's (measured over a {facts.round_trip * 1000:.0f} ms round trip); the nodes' clocks must "
              f"agree within {lease_seconds * CLOCK_SHARE_FAIL:.1f} s, a third of node_lease_seconds")
    fix = ("keep every node's clock and the database server's synchronised with NTP (chrony or systemd-timesyncd; "
           "timedatectl status shows whether it is)")
    if abs(offset) > lease_seconds * CLOCK_SHARE_FAIL:
        return Check("clock", FAIL, detail, fix)
    if abs(offset) > lease_seconds * CLOCK_SHARE_WARN:
        return Check("clock", WARN, detail, fix)
    return Check("clock", OK, detail)


def node_clocks_check(nodes: Sequence[Node], database_now: float, margin: float) -> Check:
    """Nodes whose last heartbeat lies more than ``margin`` ahead of the database's clock: their clocks are ahead, so
    should they die, the others would take them for alive too long."""
    if not nodes:
        return Check("node clocks", OK, "no node has joined the ledger yet")
    ahead = [(node, node.last_beat - database_now) for node in nodes if node.last_beat - database_now > margin]
    if not ahead:
        return Check("node clocks", OK, f"no heartbeat of the {len(nodes)} node(s) lies in the future")
    told = ", ".join(f"{node.name} on {node.host} by {human_age(seconds)}" for node, seconds in ahead)
    return Check("node clocks", FAIL, f"heartbeats in the future (their clocks are ahead of the database's by more "
                 f"than {margin:.1f} s): {told}",
                 "synchronise those nodes' clocks with NTP (chrony or systemd-timesyncd); timedatectl status on "
                 "each shows whether it is")


def disk_checks(config: Config) -> Iterator[Check]:
    places: dict[int, tuple[Path, str]] = {}
    ledger = [] if isinstance(config.ledger, PostgresUrl) else [(config.ledger.parent, "ledger")]
    candidates = ledger + [(folder.sidecars.output_dir or folder.path, "sidecars") for folder in config.folders]
    for path, what in candidates:
        existing = path
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        try:
            device = existing.stat().st_dev
        except OSError:
            continue
        places.setdefault(device, (existing, what))
    for path, what in places.values():
        stats = os.statvfs(path)
        free = stats.f_bavail * stats.f_frsize
        detail = f"{free / 1024**3:.1f} GiB free ({what})"
        fix = f"free space on the file system holding {path}"
        if free < FREE_FAIL_BYTES:
            yield Check(f"disk {path}", FAIL, detail, fix)
        elif free < FREE_WARN_BYTES:
            yield Check(f"disk {path}", WARN, detail, fix)
        else:
            yield Check(f"disk {path}", OK, detail)
