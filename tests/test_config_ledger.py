"""The ledger's config: a SQLite path or a PostgreSQL URL, never a password inline; folder ids; the password's
sources in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepva_watch.config import (
    LEDGER_PASSWORD_CREDENTIAL,
    ConfigError,
    PostgresUrl,
    parse_config,
    resolve_ledger_password,
)


def _config(tmp_path: Path, **top: object) -> dict[str, object]:
    (tmp_path / "a").mkdir(exist_ok=True)
    (tmp_path / "b").mkdir(exist_ok=True)
    return {"folders": [{"path": str(tmp_path / "a"), "modules": {"face_recognition": {}}},
                        {"path": str(tmp_path / "b"), "modules": {"face_recognition": {}}}], **top}


def test_a_path_is_a_sqlite_ledger_and_a_postgresql_url_a_shared_one(tmp_path: Path) -> None:
    assert parse_config(_config(tmp_path, ledger=str(tmp_path / "l.sqlite3"))).ledger == tmp_path / "l.sqlite3"
    url = "postgresql://dvw@db.example:5433/ingest?sslmode=verify-full&sslrootcert=/etc/ssl/db.pem"
    ledger = parse_config(_config(tmp_path, ledger=url)).ledger
    assert isinstance(ledger, PostgresUrl) and ledger == url, "TLS options pass through to libpq unchanged"


@pytest.mark.parametrize(("url", "why"), [
    ("postgresql://dvw:Hunter2-secret@db/ingest", "holds a password"),
    ("postgresql://db/ingest?password=Hunter2-secret", "holds a password"),
    ("postgresql://db:port/ingest", "port is not a number"),
    ("postgresql://db.example/", "names no database"),
])
def test_an_unusable_postgresql_url_is_one_line_that_never_shows_it(tmp_path: Path, url: str, why: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(_config(tmp_path, ledger=url))
    assert str(refused.value).startswith("ledger: the PostgreSQL URL cannot be used: ") and why in str(refused.value)
    assert "Hunter2" not in str(refused.value) and len(refused.value.lines) == 1, "never taken for a path either"


def test_folder_ids_are_unique_names(tmp_path: Path) -> None:
    data = _config(tmp_path)
    for folder in data["folders"]:  # type: ignore[attr-defined]
        folder["id"] = "share"
    with pytest.raises(ConfigError, match=r"folders\[1\].id: the same id as folders\[0\].id"):
        parse_config(data)
    data["folders"][1]["id"] = " "  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"folders\[1\].id: expected a name on one line"):
        parse_config(data)


def test_the_ledger_password_comes_from_its_file_then_the_environment_then_a_credential(tmp_path: Path) -> None:
    config = parse_config(_config(tmp_path, ledger="postgresql://dvw@db/ingest"))
    assert resolve_ledger_password(config, environ={}) is None, "libpq's own sources (~/.pgpass) are left to it"
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / LEDGER_PASSWORD_CREDENTIAL).write_text("from-credential\n")
    environ = {"CREDENTIALS_DIRECTORY": str(credentials)}
    assert resolve_ledger_password(config, environ=environ).reveal() == "from-credential"  # type: ignore[union-attr]
    environ["DEEPVA_WATCH_LEDGER_PASSWORD"] = "from-environment"
    assert resolve_ledger_password(config, environ=environ).reveal() == "from-environment"  # type: ignore[union-attr]
    (tmp_path / "password").write_text("from-file\n")
    with_file = parse_config(_config(tmp_path, ledger="postgresql://dvw@db/ingest",
                                     ledger_password_file=str(tmp_path / "password")))
    secret = resolve_ledger_password(with_file, environ=environ)
    assert secret is not None and secret.reveal() == "from-file" and "from-file" not in repr(secret)
    (tmp_path / "password").write_text("")
    with pytest.raises(ConfigError, match="ledger_password_file: .* is empty"):
        resolve_ledger_password(with_file, environ=environ)
