"""Configuration: YAML in, frozen dataclasses out, and one clear message when something is wrong.

The schema is declared once, as the dataclasses below: each field's type, default and help text. The loader walks it
generically, so every error names the key path (``folders[1].modules: expected a mapping of module name to options``),
and ``config.example.yaml`` is checked against the same declaration by the test suite, so the two cannot drift.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import fnmatch
import math
import os
import re
import shutil
import types
import typing
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping
from urllib.parse import urlsplit

import yaml

DEFAULT_API_URL = "https://api.deepva.com/api/v1"
API_KEY_ENV = "DEEPVA_API_KEY"
API_KEY_CREDENTIAL = "deepva-api-key"
LEDGER_PASSWORD_ENV = "DEEPVA_WATCH_LEDGER_PASSWORD"
LEDGER_PASSWORD_CREDENTIAL = "deepva-watch-ledger-password"


class ConfigError(Exception):
    """Configuration problems, each phrased for the operator as one line: ``<key path>: <what is expected>``."""

    def __init__(self, key_path: str, message: str) -> None:
        self.key_path = key_path
        self.message = message
        self.lines = [_one_line(key_path, message)]
        super().__init__(self.lines[0])

    @classmethod
    def of(cls, problems: list[tuple[str, str]]) -> ConfigError:
        error = cls(*problems[0])
        error.lines = [_one_line(key, message) for key, message in problems]
        error.args = ("; ".join(error.lines),)
        return error

    def __str__(self) -> str:
        return "; ".join(self.lines)


def _one_line(key_path: str, message: str) -> str:
    """Keys and values come from the file: a line break or control character in them is shown escaped."""
    line = f"{key_path}: {message}" if key_path else message
    return line if line.isprintable() else "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in line)


def _help(text: str, *, between: tuple[float, float] | None = None, **kwargs: Any) -> Any:
    """A field with its help text (and, for numbers, the range it must lie in) attached, so docs and the example
    config follow from the schema."""
    metadata: dict[str, Any] = {"help": text}
    if between is not None:
        metadata["between"] = between
    return field(metadata=metadata, **kwargs)


class PostgresUrl(str):
    """A ``postgresql://user@host:port/database`` ledger URL (its query passes TLS options to libpq). It never holds
    the password, so it may be shown."""


class Secret(str):
    """A string that never shows itself in logs, reprs or tracebacks."""

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:  # f-strings and str() both hide it; use .reveal() where the real value is needed
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def reveal(self) -> str:
        return str.__str__(self)


@dataclass(frozen=True)
class ApiConfig:
    url: str = _help("Base URL of the DeepVA API, up to and including /api/v1.", default=DEFAULT_API_URL)
    key_file: Path | None = _help(
        f"File holding the API key. Without it the key comes from ${API_KEY_ENV} or the systemd credential "
        f"'{API_KEY_CREDENTIAL}' ($CREDENTIALS_DIRECTORY). Keys are never accepted inline.",
        default=None,
    )
    connect_timeout_seconds: float = _help("Seconds to wait for a connection to the API (0.1 to 600).", default=10.0,
                                           between=(0.1, 600))
    read_timeout_seconds: float = _help("Seconds to wait for each response, and between bytes of one (1 to 3600).",
                                        default=60.0, between=(1, 3600))
    retries: int = _help("Tries per request on 5xx, 429, timeouts and connection errors before giving up (1 to 20).",
                         default=5, between=(1, 20))
    ca_bundle: Path | None = _help("CA bundle for a private on-prem certificate authority (null: the system's CA bundle, "
                                   "or certifi's where the system has none); TLS is always verified.", default=None)


@dataclass(frozen=True)
class SidecarConfig:
    xmp: bool = _help("Write an XMP sidecar (keywords, people, face regions, video markers).", default=True)
    json: bool = _help("Write a JSON sidecar with the whole result (<name>.deepva.json).", default=True)
    naming: Literal["auto", "name", "stem"] = _help(
        "XMP file name: 'name' gives IMG_1.jpg.xmp, 'stem' gives clip.xmp (Adobe's form); 'auto' uses 'name' for "
        "images and 'stem' for video.",
        default="auto",
    )
    output_dir: Path | None = _help(
        "Write sidecars into this folder, mirroring the watched tree, instead of next to the media (for read-only shares).",
        default=None,
    )
    digikam_tags_list: bool = _help(
        "Also write digiKam:TagsList (which digiKam and Immich read before lr:hierarchicalSubject) into XMP sidecars "
        "that have none. It is always written where the sidecar or the image already has one, or a keyword holds a '/', "
        "and kept in step with the other keyword fields. Off by default: Lightroom, Bridge and darktable do not update "
        "it when they change keywords.",
        default=False,
    )


@dataclass(frozen=True)
class PathMapRule:
    local: str = _help("A path prefix as this host sees it, e.g. /mnt/media.")
    remote: str = _help(r"The same place as the DeepVA server sees it, e.g. /media or \\server\share.")


@dataclass(frozen=True)
class HttpAction:
    url: str = _help("Where the event is POSTed (http:// or https://).")
    headers_file: Path | None = _help(
        "File of extra request headers, one 'Name: value' per line (an Authorization header stays out of the config).",
        default=None)
    secret_file: Path | None = _help(
        "File holding a secret: the body is then signed, header X-DeepVA-Watch-Signature: sha256=<HMAC-SHA256 hex>.",
        default=None)
    timeout_seconds: float = _help("Seconds before a request is given up and tried again later (1 to 600).",
                                   default=10.0, between=(1, 600))


@dataclass(frozen=True)
class Actions:
    move_to: Path | None = _help(
        "Move the media and its sidecars into this folder (relative to the watched folder, or absolute), keeping the "
        "sub-path; a name already taken gets a numbered suffix, never an overwrite.", default=None)
    exec: tuple[str, ...] = _help(
        "A program and its arguments, run without a shell once per file, with the file's facts in DEEPVA_WATCH_* "
        "environment variables (see README).", default=())
    exec_timeout_seconds: float = _help("Seconds before the program is killed and the action tried again later "
                                        "(1 to 86400).", default=300.0, between=(1, 86400))
    http: HttpAction | None = _help("POST an event about the file to a URL.", default=None)


@dataclass(frozen=True)
class NewerThan:
    newer_than: str = _help(
        "Only files modified after this are processed: an ISO date or time (2026-01-31, 2026-01-31T06:00+01:00; "
        "without a zone, the server's) or an age counted back from when the folder was first watched (90m, 12h, 7d, "
        "2w).")


@dataclass(frozen=True)
class FolderConfig:
    path: Path = _help("The folder to watch. It must exist when the daemon starts.")
    modules: Mapping[str, Mapping[str, Any]] = _help(
        "DeepVA modules to run on this folder's files, each with its options, passed to DeepVA unchanged.",
    )
    id: str | None = _help(
        "The folder's name in the ledger; null: its path. Give it the same id on every node of a PostgreSQL ledger "
        "when the share is mounted at different paths. Changing it later makes the ledger see a new folder.",
        default=None)
    recursive: bool = _help("Watch sub-folders too.", default=True)
    settle_seconds: float = _help(
        "A file is complete once its size and modification time have not changed for this long (0 to 86400).",
        default=5.0, between=(0, 86400),
    )
    include: tuple[str, ...] = _help(
        "Glob patterns (matched against the path relative to the folder, and against the file name) a file must match.",
        default=("*",),
    )
    exclude: tuple[str, ...] = _help("Glob patterns that exclude a file even when it matches 'include'.", default=())
    storage_folder: str = _help("Folder in DeepVA storage that uploads go to.", default="/")
    sidecars: SidecarConfig = _help("Which sidecars to write and where.", default=SidecarConfig())
    watch: Literal["auto", "events", "poll"] = _help(
        "How changes are noticed: 'events' (inotify; local disks), 'poll' (scan every poll_interval_seconds; SMB/NFS "
        "shares, where inotify sees nothing), or 'auto' (poll on network and FUSE file systems, events elsewhere).",
        default="auto",
    )
    poll_interval_seconds: float = _help("Seconds between scans when polling (0.1 to 86400).", default=10.0,
                                         between=(0.1, 86400))
    rescan_interval_seconds: float = _help(
        "Seconds between full rescans that reconcile the folder with the ledger in event mode (events are only hints; "
        "1 to 604800).",
        default=300.0, between=(1, 604800),
    )
    min_size: int = _help("Files smaller than this many bytes are ignored.", default=1)
    max_size: int | None = _help("Files larger than this many bytes are ignored; null: no limit.", default=None)
    follow_symlinks: bool = _help("Follow symbolic links to files and folders (loops are detected and skipped).", default=False)
    anchor_file: str | None = _help(
        "A file (relative to the folder) that must exist for the folder to count as mounted; without it the folder "
        "is paused instead of looking empty. Guards against shares that drop.",
        default=None,
    )
    priority: int = _help("Files from folders with a higher priority are uploaded and submitted first (-1000 to 1000).",
                          default=0, between=(-1000, 1000))
    source: Literal["upload", "local_path", "url"] = _help(
        "What DeepVA is given: 'upload' (the file is uploaded to DeepVA storage), 'local_path' (on-prem: the path as "
        "the DeepVA server sees it, through path_map), or 'url' (url_prefix + the path relative to the folder).",
        default="upload",
    )
    path_map: tuple[PathMapRule, ...] = _help(
        "For source 'local_path': rules translating this host's paths to the DeepVA server's; the longest matching "
        "'local' prefix wins.",
        default=(),
    )
    url_prefix: str | None = _help("For source 'url': the public URL of this folder, e.g. https://media.example/in/.", default=None)
    on_done: Actions | None = _help(
        "What to do once a file's sidecars are written, in this order: move_to, exec, http. null: nothing.",
        default=None)
    on_failed: Actions | None = _help("The same, once a file has failed for good. null: nothing.", default=None)
    existing: Literal["process", "skip"] | NewerThan = _help(
        "What happens to the files already in the folder when the ledger first sees it: 'process' them, 'skip' them "
        "(recorded, never submitted; a later change to one is processed), or {newer_than: 7d} to process only the "
        "recent ones. A restart never changes what was decided.",
        default="process",
    )

    def actions_for(self, outcome: str) -> Actions | None:
        """``on_done`` for a file that is ``done``, ``on_failed`` for one that ``failed``."""
        return self.on_done if outcome == "done" else self.on_failed


@dataclass(frozen=True)
class WebhookConfig:
    listen: str | None = _help("host:port the webhook receiver listens on, e.g. 0.0.0.0:8787; null: no receiver.", default=None)
    callback_url: str | None = _help("The URL DeepVA calls, as DeepVA reaches this host, e.g. https://watch.example:8787/hook.", default=None)
    secret_file: Path | None = _help("File holding the webhook signing secret set in the DeepVA web app.", default=None)
    signature_header: str = _help("Header carrying the HMAC-SHA512 signature of the body (hex).", default="X-DeepVA-Signature")
    nonce_header: str = _help("Header carrying the delivery's increasing nonce.", default="X-DeepVA-Nonce")


@dataclass(frozen=True)
class BudgetConfig:
    video_minutes_per_day: float | None = _help(
        "Minutes of video handed to DeepVA per day, at most (1 to 1000000); null: no cap. At the cap, uploads and job "
        "creation pause until the next day; jobs under way are tracked and published.",
        default=None, between=(1, 1_000_000))
    images_per_day: int | None = _help("Images handed to DeepVA per day, at most (1 to 100000000); null: no cap.",
                                       default=None, between=(1, 100_000_000))
    time_zone: str | None = _help("IANA time zone whose midnight starts the day, e.g. Europe/Berlin; null: the "
                                  "server's own.", default=None)


@dataclass(frozen=True)
class MetricsConfig:
    listen: str | None = _help("host:port for /metrics (Prometheus), /healthz and the status page (/), e.g. "
                               "127.0.0.1:9187; null: off.", default=None)
    api_failure_seconds: float = _help("/healthz turns red when every API call has failed for this long (1 to 86400).",
                                       default=300.0, between=(1, 86400))
    page: bool = _help("Serve the status page (/) and its JSON twin (/status.json): folders, files per state, uploads, "
                       "failures and each file's story, with file names. false: only /metrics and /healthz.",
                       default=True)
    page_refresh_seconds: float = _help("How often the status page reloads itself (1 to 3600).", default=5.0,
                                        between=(1, 3600))
    page_actions_token_file: Path | None = _help(
        "File holding the token (one line, at least 16 characters) that unlocks the page's retry and reprocess "
        "buttons; the operator enters it once in the page's sign-in form. Read again when it changes. null: the page "
        "is read-only.", default=None)


@dataclass(frozen=True)
class Config:
    folders: tuple[FolderConfig, ...] = _help("The watched folders (at least one).")
    api: ApiConfig = _help("How to reach DeepVA.", default=ApiConfig())
    ledger: PostgresUrl | Path = _help(
        "The ledger that records every file and job, the daemon's only state: a SQLite file (one node), or a "
        "postgresql://user@host:port/database URL shared by several nodes (TLS options in its query, e.g. "
        "?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem; the password never in it).",
        default=Path("/var/lib/deepva-watch/ledger.sqlite3"),
    )
    ledger_password_file: Path | None = _help(
        f"File holding the PostgreSQL ledger's password (one line); else ${LEDGER_PASSWORD_ENV}, or a systemd "
        f"credential named {LEDGER_PASSWORD_CREDENTIAL}; none: libpq's own (~/.pgpass, a client certificate).",
        default=None)
    node_name: str | None = _help(
        "This daemon's name among the nodes of a PostgreSQL ledger (unique per node); null: the host name.",
        default=None)
    node_lease_seconds: float = _help(
        "A node silent for this long is taken as dead and the others take its files over; it beats every third of "
        "it. Keep the nodes' clocks closer than a third of it (10 to 3600).", default=30.0, between=(10, 3600))
    ledger_retention_days: float = _help(
        "Rows and history older than this many days go once they guard nothing: versions gone or replaced, files no "
        "longer in their folder. The newest version of a file still present always stays (1 to 36500).",
        default=90.0, between=(1, 36500))
    max_uploads: int = _help("Uploads running at the same time (1 to 64).", default=2, between=(1, 64))
    max_upload_mbps: float | None = _help(
        "Cap on upload bandwidth in megabits per second (all uploads together; 0.1 to 100000); null: none.",
        default=None, between=(0.1, 100000))
    max_active_jobs: int = _help("DeepVA jobs submitted and not yet finished, at most (1 to 10000).", default=20,
                                 between=(1, 10000))
    poll_interval_seconds: float = _help(
        "Seconds between looks at a DeepVA job whose progress tells nothing yet (0.1 to 3600). Otherwise a job is "
        "looked at when it is likely done: by its progress, or by what DeepVA took for the last jobs of its kind.",
        default=5.0, between=(0.1, 3600))
    max_requests_per_minute: int = _help("Ceiling on job-status requests per minute (1 to 100000).", default=120,
                                         between=(1, 100000))
    overdue_job_seconds: float = _help(
        "A DeepVA job not finished after this long is reported: health turns amber, status and the metrics name it "
        "(60 to 2592000).", default=86400.0, between=(60, 2592000))
    overdue_job_release_seconds: float = _help(
        "After this long its max_active_jobs slot goes to the next file; the job is still tracked (60 to 2592000).",
        default=172800.0, between=(60, 2592000))
    retry_failed_jobs: bool = _help(
        "Submit a file again when DeepVA reports its job failed. Off by default: a failed job usually needs a person "
        "(see 'deepva-watch retry').",
        default=False,
    )
    delete_storage_after_completion: bool = _help("Delete the uploaded copy from DeepVA storage once the results are written.", default=False)
    delete_job_after_publish: bool = _help("Delete the DeepVA job once its results are written.", default=False)
    budget: BudgetConfig = _help("Optional daily cap on what is handed to DeepVA (DeepVA bills by what it analyses).",
                                 default=BudgetConfig())
    webhook: WebhookConfig = _help("Optional receiver for DeepVA's job callbacks; polling stays on as the guarantee.", default=WebhookConfig())
    metrics: MetricsConfig = _help("Optional HTTP endpoint with Prometheus metrics, /healthz and the status page.",
                                   default=MetricsConfig())
    log_level: Literal["debug", "info", "warning", "error"] = _help("Least severe log level written.", default="info")


# ----------------------------------------------------------------------------------------------------------------------
# Generic loading against the declared schema: every problem is collected, each as one line with its key path.

_BAD = object()  # what a conversion returns after it recorded a problem
_LARGEST_INT = 2**63 - 1
_URL_KEYS = {"api.url", "webhook.callback_url"}


class _Problems(list[tuple[str, str]]):
    def __init__(self) -> None:
        super().__init__()
        self.refused: set[str] = set()
    def add(self, key_path: str, message: str) -> object:
        self.append((key_path, message))
        return _BAD


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return "a whole number"
    if annotation is float:
        return "a number"
    if annotation in (str, Path):
        return "a path" if annotation is Path else "a string"
    if annotation is PostgresUrl:
        return "a postgresql:// URL"
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(annotation))
    if origin is tuple:
        return "a list"
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        keys = [spec.name for spec in dataclasses.fields(annotation)]
        return f"a mapping {{{keys[0]}: ...}}" if len(keys) == 1 else "a mapping"
    return str(annotation)


def _number(value: Any, annotation: Any, key_path: str, between: tuple[float, float] | None,
            problems: _Problems) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (annotation is int and isinstance(value, float)):
        return problems.add(key_path, f"expected {_describe(annotation)}, got {_shown(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        return problems.add(key_path, f"expected a finite number, got {_shown(value)}")
    low, high = between if between is not None else (0, _LARGEST_INT)
    if not low <= value <= high:
        return problems.add(key_path, f"expected a value from {low:g} to {high:g}, got {_shown(value)}")
    return annotation(value)


def _shown(value: Any) -> str:
    """A value as an error line shows it: short, on one line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _convert(value: Any, annotation: Any, key_path: str, problems: _Problems,
             between: tuple[float, float] | None = None) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        choices = [arg for arg in args if arg is not type(None)]
        if len(choices) == 1:
            return _convert(value, choices[0], key_path, problems, between)
        for choice in choices:  # the first alternative that takes the value without a problem
            scratch = _Problems()
            converted = _convert(value, choice, key_path, scratch, between)
            if not scratch:
                return converted
            if key_path in scratch.refused:  # the value is of this kind but wrong: say why, try no other kind
                problems.extend(scratch)
                return _BAD
        return problems.add(key_path, f"expected {' or '.join(_describe(choice) for choice in choices)}, "
                                      f"got {_shown(value)}")
    if value is None:
        return problems.add(key_path, f"expected {_describe(annotation)}, got nothing")
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return _build(annotation, value, key_path, problems)
    if annotation is bool:
        return value if isinstance(value, bool) else problems.add(key_path, f"expected true or false, got {_shown(value)}")
    if annotation in (int, float):
        return _number(value, annotation, key_path, between, problems)
    if annotation is str:
        if isinstance(value, (datetime.date, datetime.datetime)):  # YAML reads an unquoted 2026-01-31 as a date
            value = value.isoformat()
        if not isinstance(value, str):
            return problems.add(key_path, f"expected a string, got {_shown(value)}")
        if key_path in _URL_KEYS or key_path.endswith((".url_prefix", ".http.url")):
            return _url(value, key_path, problems)
        return value
    if annotation is PostgresUrl:
        return _postgres_url(value, key_path, problems)
    if annotation is Path:
        if not isinstance(value, str) or not value or "\0" in value:
            return problems.add(key_path, f"expected a path, got {_shown(value)}")
        return Path(os.path.expanduser(value))
    if origin is Literal:
        return value if value in args else problems.add(key_path, f"expected {_describe(annotation)}, got {_shown(value)}")
    if origin is tuple:
        if isinstance(value, str) and args[0] is str:
            value = [value]
        if not isinstance(value, list):
            return problems.add(key_path, f"expected a list, got {_shown(value)}")
        items = tuple(_convert(item, args[0], f"{key_path}[{index}]", problems) for index, item in enumerate(value))
        return _BAD if _BAD in items else items
    if origin in (collections.abc.Mapping, dict):  # module name -> options
        if not isinstance(value, dict):
            return problems.add(key_path, f"expected a mapping of module name to options, got {_shown(value)}")
        if not value:
            return problems.add(key_path, "is empty: name at least one DeepVA module")
        bad = False
        for name, options in value.items():
            if not isinstance(name, str) or not name:
                bad = bool(problems.add(key_path, f"expected module names as keys, got {_shown(name)}"))
            elif options is not None and not isinstance(options, dict):
                bad = bool(problems.add(f"{key_path}.{name}", "expected a mapping of option name to value (or nothing)"))
        if bad:
            return _BAD
        return types.MappingProxyType({name: dict(options or {}) for name, options in value.items()})
    raise TypeError(f"unsupported schema type at {key_path}: {annotation!r}")


def _postgres_url(value: Any, key_path: str, problems: _Problems) -> Any:
    """A ``postgresql://`` URL without a password (a path is tried next when the value is no such URL)."""
    if not isinstance(value, str) or not value.startswith(("postgresql://", "postgres://")):
        return problems.add(key_path, "expected a postgresql:// URL")
    parts = urlsplit(value)
    try:
        _ = parts.port  # raises for a port that is no number
    except ValueError:
        return _refused_url(key_path, problems, "its port is not a number")
    if parts.password is not None or "password=" in parts.query:
        return _refused_url(key_path, problems, f"it holds a password: use ledger_password_file, "
                                                f"${LEDGER_PASSWORD_ENV} or a systemd credential")
    if not parts.path.strip("/"):
        return _refused_url(key_path, problems, "it names no database (postgresql://user@host:port/database)")
    return PostgresUrl(value)


def _refused_url(key_path: str, problems: _Problems, why: str) -> Any:
    """A URL that is a PostgreSQL URL but cannot be used: said once, never as a path, and never shown."""
    problems.add(key_path, f"the PostgreSQL URL cannot be used: {why}")
    problems.refused.add(key_path)
    return _BAD


def _url(value: str, key_path: str, problems: _Problems) -> Any:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return problems.add(key_path, f"expected an http:// or https:// URL with a host, got {_shown(value)}")
    return value


def _build(cls: type, data: Any, key_path: str, problems: _Problems) -> Any:
    if not isinstance(data, dict):
        return problems.add(key_path or "(top level)", f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            path = f"{key_path}.{key}" if key_path else str(key)
            if cls is ApiConfig and key == "key":
                problems.add(path, f"keys are not accepted inline; use api.key_file, ${API_KEY_ENV} or a systemd credential")
            else:
                problems.add(path, "unknown key (expected one of: " + ", ".join(fields) + ")")
    values = {}
    for name, spec in fields.items():
        path = f"{key_path}.{name}" if key_path else name
        if name in data:
            values[name] = _convert(data[name], hints[name], path, problems, spec.metadata.get("between"))
        elif spec.default is dataclasses.MISSING:
            problems.add(path, f"required: {spec.metadata.get('help', '')}".rstrip())
            values[name] = _BAD
    if _BAD in values.values():
        return _BAD
    return cls(**values)


def parse_config(data: Any, *, check_paths: bool = True) -> Config:
    """A config from parsed YAML; raises :class:`ConfigError` naming every problem found."""
    problems = _Problems()
    config = _build(Config, data if data is not None else {}, "", problems)
    if config is not _BAD:
        _check_whole(config, problems, check_paths=check_paths)
    if problems:
        raise ConfigError.of(problems)
    assert isinstance(config, Config)
    return config


def _check_whole(config: Config, problems: _Problems, *, check_paths: bool) -> None:
    """What no single value shows: folders that exist and differ, settings that need each other."""
    if not config.folders:
        problems.add("folders", "expected at least one folder to watch")
    if config.budget.time_zone is not None:
        try:
            zoneinfo.ZoneInfo(config.budget.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.add("budget.time_zone", f"unknown time zone {_shown(config.budget.time_zone)} (expected an IANA "
                                             "name such as Europe/Berlin)")
    if config.overdue_job_release_seconds < config.overdue_job_seconds:
        problems.add("overdue_job_release_seconds", "expected a value of overdue_job_seconds or more")
    seen: dict[Path, int] = {}
    ids: dict[str, int] = {}
    for index, folder in enumerate(config.folders):
        key = f"folders[{index}]"
        if folder.id is not None:
            if not folder.id.strip() or not folder.id.isprintable():
                problems.add(f"{key}.id", "expected a name on one line")
            elif folder.id in ids:
                problems.add(f"{key}.id", f"the same id as folders[{ids[folder.id]}].id")
            ids[folder.id] = index
        if check_paths and not folder.path.is_dir():
            problems.add(f"{key}.path", f"folder {str(folder.path)!r} does not exist or is not a directory")
        resolved = folder.path.resolve() if check_paths else folder.path
        if resolved in seen:
            problems.add(f"{key}.path", f"the same folder as folders[{seen[resolved]}].path")
        seen[resolved] = index
        if folder.source == "url" and not folder.url_prefix:
            problems.add(f"{key}.url_prefix", "required when source is 'url'")
        if folder.source == "local_path" and not folder.path_map:
            problems.add(f"{key}.path_map", "required when source is 'local_path' (at least one local → remote rule)")
        if folder.max_size is not None and folder.max_size < folder.min_size:
            problems.add(f"{key}.max_size", "expected a value of min_size or more")
        for outcome in ("on_done", "on_failed"):
            actions = getattr(folder, outcome)
            if actions is not None:
                _check_actions(actions, folder, f"{key}.{outcome}", problems, check_paths=check_paths)
        if isinstance(folder.existing, NewerThan):
            try:
                newer_than_cutoff(folder.existing.newer_than, first_seen=0.0)
            except ValueError:
                problems.add(f"{key}.existing.newer_than", f"expected an ISO date or an age such as 7d, got "
                                                           f"{_shown(folder.existing.newer_than)}")
    _check_overlaps(config.folders, problems, resolve=check_paths)
    hook = config.webhook
    if hook.listen is not None:
        if not hook.callback_url:
            problems.add("webhook.callback_url", "required when webhook.listen is set")
        if hook.secret_file is None:
            problems.add("webhook.secret_file", "required when webhook.listen is set: deliveries must be verified")
        _listen(hook.listen, "webhook.listen", problems)
    if config.metrics.listen is not None:
        _listen(config.metrics.listen, "metrics.listen", problems)


def _check_actions(actions: Actions, folder: FolderConfig, key: str, problems: _Problems, *,
                   check_paths: bool) -> None:
    """Every action is possible as configured: the folder to move to exists and can be written, the program runs,
    the files named can be read."""
    if actions.move_to is None and not actions.exec and actions.http is None:
        problems.add(key, "names no action: give move_to, exec or http (or leave it out)")
    if not check_paths:
        return
    if actions.move_to is not None:
        target = actions.move_to if actions.move_to.is_absolute() else folder.path / actions.move_to
        if not target.is_dir():
            problems.add(f"{key}.move_to", f"folder {str(target)!r} does not exist")
        elif not os.access(target, os.W_OK | os.X_OK):
            problems.add(f"{key}.move_to", f"folder {str(target)!r} cannot be written")
    if actions.exec:
        program = actions.exec[0]
        found = program if "/" in program else shutil.which(program)
        if found is None or not os.path.isfile(found) or not os.access(found, os.X_OK):
            problems.add(f"{key}.exec", f"{program!r} is not an executable program"
                                        f"{'' if '/' in program else ' on PATH'}")
    if actions.http is not None:
        for name in ("headers_file", "secret_file"):
            path = getattr(actions.http, name)
            if path is not None and not os.access(path, os.R_OK):
                problems.add(f"{key}.http.{name}", f"cannot read {str(path)!r}")


def _check_overlaps(folders: Sequence[FolderConfig], problems: _Problems, *, resolve: bool) -> None:
    """A folder inside another would give its files two rows and two jobs: refused, unless the outer one does not
    look there (not recursive, or an ``exclude`` pattern covering the inner folder)."""
    roots = [folder.path.resolve() if resolve else folder.path.absolute() for folder in folders]
    for inner_index, inner in enumerate(roots):
        for outer_index, outer in enumerate(roots):
            if inner == outer or not inner.is_relative_to(outer):
                continue
            relative = inner.relative_to(outer).as_posix()
            if not folders[outer_index].recursive or _excludes(folders[outer_index], relative):
                continue
            problems.add(f"folders[{inner_index}].path",
                         f"inside folders[{outer_index}].path ({folders[outer_index].path}): its files would be taken "
                         f"twice; add exclude: ['{relative}/*'] to folders[{outer_index}], or watch only one of them")


def _excludes(folder: FolderConfig, relative: str) -> bool:
    """Whether the folder's ``exclude`` patterns cover every file below ``relative`` (probed with a file name)."""
    probe = f"{relative}/any/file.name"
    return any(fnmatch.fnmatchcase(probe, pattern) for pattern in folder.exclude)


_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
"""Seconds per unit of an age such as ``7d`` (the config's ``newer_than`` and the commands' ``--older-than``)."""


def newer_than_cutoff(text: str, *, first_seen: float) -> float:
    """The modification time (epoch seconds) a file must be newer than for ``existing: {newer_than: text}``: an age
    counts back from ``first_seen``, a date without a zone is the server's local time. Raises ValueError."""
    text = text.strip()
    match = _AGE.match(text)
    if match:
        return first_seen - float(match[1]) * AGE_UNITS[match[2]]
    moment = datetime.datetime.fromisoformat(text)
    return (moment if moment.tzinfo is not None else moment.astimezone()).timestamp()


def _listen(value: str, key_path: str, problems: _Problems) -> None:
    host, _, port = value.rpartition(":")
    bare = host.strip("[]")
    if not bare or not port.isdigit() or not 0 < int(port) < 65536 or (":" in bare and not host.startswith("[")):
        problems.add(key_path, f"expected host:port (IPv6 as [::1]:port), got {_shown(value)}")


def host_port(value: str) -> tuple[str, int]:
    """Split a validated ``host:port`` setting (IPv6 without its brackets)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML says the last one wins: a silent trap)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice in one mapping", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_config(path: Path, *, check_paths: bool = True) -> Config:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError("", f"cannot read config file {str(path)!r}: {error.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ConfigError("", f"{path} is not UTF-8 text (line {line}, byte {error.start})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        raise ConfigError("", f"{path} is not valid YAML: {_yaml_reason(error)}") from None
    return parse_config(data, check_paths=check_paths)


def _yaml_reason(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        problem = (error.problem or "").replace("'\\t'", "a tab (indent with spaces)")
        context = f" ({error.context})" if error.context else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}{context}"
    return str(error).splitlines()[0]


def read_secret_file(path: Path, key_path: str, *, header: bool = False) -> Secret:
    """The one-line secret in ``path``, stripped; every way it cannot be used is a :class:`ConfigError` for
    ``key_path`` that never shows the secret. ``header``: it is sent in an HTTP header, so ASCII only."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(key_path, f"cannot read {str(path)!r}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(key_path, f"{str(path)!r} is not UTF-8 text (byte {error.start})") from None
    return checked_secret(text, f"{str(path)!r}", key_path, header=header)


def checked_secret(text: str, where: str, key_path: str, *, header: bool = False) -> Secret:
    if not text:
        raise ConfigError(key_path, f"{where} is empty")
    if not text.isprintable():
        raise ConfigError(key_path, f"{where} holds a line break or control character: expected one line")
    if header and not text.isascii():
        raise ConfigError(key_path, f"{where} holds a character that is not ASCII, which an HTTP header cannot carry")
    return Secret(text)


def resolve_api_key(api: ApiConfig, environ: Mapping[str, str] = os.environ) -> Secret:
    """Find the key: api.key_file, then $DEEPVA_API_KEY, then the systemd credential. Raises ConfigError if none."""
    if api.key_file is not None:
        return read_secret_file(api.key_file, "api.key_file", header=True)
    if environ.get(API_KEY_ENV, "").strip():
        return checked_secret(environ[API_KEY_ENV].strip(), f"${API_KEY_ENV}", "api.key_file", header=True)
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        candidate = Path(credentials) / API_KEY_CREDENTIAL
        if candidate.is_file():
            return read_secret_file(candidate, "api.key_file", header=True)
    raise ConfigError(
        "api.key_file",
        f"no API key found: set api.key_file, the environment variable {API_KEY_ENV}, "
        f"or a systemd credential named {API_KEY_CREDENTIAL}",
    )


def resolve_ledger_password(config: Config, environ: Mapping[str, str] = os.environ) -> Secret | None:
    """The PostgreSQL ledger's password: ledger_password_file, then $DEEPVA_WATCH_LEDGER_PASSWORD, then the systemd
    credential; None: libpq finds its own (~/.pgpass, a client certificate). Raises ConfigError if unreadable."""
    if config.ledger_password_file is not None:
        return read_secret_file(config.ledger_password_file, "ledger_password_file")
    if environ.get(LEDGER_PASSWORD_ENV, "").strip():
        return checked_secret(environ[LEDGER_PASSWORD_ENV].strip(), f"${LEDGER_PASSWORD_ENV}", "ledger_password_file")
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / LEDGER_PASSWORD_CREDENTIAL).is_file():
        return read_secret_file(Path(credentials) / LEDGER_PASSWORD_CREDENTIAL, "ledger_password_file")
    return None


def schema_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every key path the schema declares (``folders[].sidecars.naming``); the example config must document each."""
    keys = []
    hints = typing.get_type_hints(cls)
    for spec in dataclasses.fields(cls):
        path = f"{prefix}{spec.name}"
        keys.append(path)
        annotation = hints[spec.name]
        args = typing.get_args(annotation)
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            keys.extend(schema_keys(annotation, f"{path}."))
        elif typing.get_origin(annotation) is tuple and args and isinstance(args[0], type) \
                and dataclasses.is_dataclass(args[0]):
            keys.extend(schema_keys(args[0], f"{path}[]."))
    return keys


def permission_warnings(config_path: Path, config: Config) -> list[str]:
    """Lines to log at start when a file holding or steering secrets is open to other users.

    Secret files (the API key file, the webhook secret file, the status page's token, the secrets and headers of
    ``http`` actions) should be readable by the daemon's user only: any group
    or other permission bit is worth a warning. The config file holds no secret itself, but it says where the key is
    sent (``api.url``) and where it is read from: one that other users may read or that others may change is flagged
    as well. Files that cannot be looked at are not reported here; reading them fails loudly elsewhere.
    """
    warnings: list[str] = []
    secret_files = [("api.key_file", config.api.key_file), ("webhook.secret_file", config.webhook.secret_file),
                    ("metrics.page_actions_token_file", config.metrics.page_actions_token_file),
                    ("ledger_password_file", config.ledger_password_file)]
    for index, folder in enumerate(config.folders):
        for outcome in ("on_done", "on_failed"):
            actions = getattr(folder, outcome)
            if actions is not None and actions.http is not None:
                secret_files += [(f"folders[{index}].{outcome}.http.{name}", getattr(actions.http, name))
                                 for name in ("secret_file", "headers_file")]
    for key_path, path in secret_files:
        mode = _mode_of(path)
        if mode is not None and mode & 0o077:
            warnings.append(
                f"{key_path} {str(path)!r} is accessible by {_who(mode)} (mode {mode:04o}); "
                f"only the daemon's user should read it: chmod 600"
            )
    mode = _mode_of(config_path)
    if mode is not None and mode & 0o026:
        what = "writable by " + _who(mode & 0o022) if mode & 0o022 else "readable by others"
        warnings.append(
            f"config file {str(config_path)!r} is {what} (mode {mode:04o}); it decides where the API key is sent: "
            f"chmod 640 or stricter"
        )
    return warnings


def _mode_of(path: Path | None) -> int | None:
    if path is None:
        return None
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return None


def _who(mode: int) -> str:
    parts = [name for name, bits in (("its group", 0o070), ("other users", 0o007)) if mode & bits]
    return " and ".join(parts)
