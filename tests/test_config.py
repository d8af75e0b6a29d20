"""Config: every mistake is reported once, naming its key path, and stops everything with exit code 2."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deepva_watch.config import (
    API_KEY_CREDENTIAL,
    ConfigError,
    Secret,
    load_config,
    parse_config,
    resolve_api_key,
    schema_keys,
)

ROOT = Path(__file__).resolve().parent.parent


def _folder(path: Path, **extra):
    return {"path": str(path), "modules": {"face_recognition": {"model": "celebrities"}}, **extra}


@pytest.mark.parametrize(
    ("mutate", "key_path", "fragment"),
    [
        (lambda d, p: d.update(unknown_key=1), "unknown_key", "unknown key"),
        (lambda d, p: d["folders"][1].update(modules=["face_recognition"]), "folders[1].modules",
         "expected a mapping of module name to options"),
        (lambda d, p: d["folders"][1].update(modules={"face_recognition": "fast"}), "folders[1].modules.face_recognition",
         "expected a mapping of option name to value"),
        (lambda d, p: d["folders"][0].update(settle_seconds="soon"), "folders[0].settle_seconds", "expected a number"),
        (lambda d, p: d["folders"][0].update(recursive="yes"), "folders[0].recursive", "expected true or false"),
        (lambda d, p: d["folders"][0].update(path=str(p / "missing")), "folders[0].path", "does not exist"),
        (lambda d, p: d["folders"][0].pop("modules"), "folders[0].modules", "required"),
        (lambda d, p: d["folders"][0]["sidecars"].update(naming="weird"), "folders[0].sidecars.naming", "one of"),
        (lambda d, p: d["folders"][0]["sidecars"].update(colour=1), "folders[0].sidecars.colour", "unknown key"),
        (lambda d, p: d["api"].update(key="abc"), "api.key", "not accepted inline"),
        (lambda d, p: d["api"].update(retries=2.5), "api.retries", "whole number"),
        (lambda d, p: d.update(max_uploads=0), "max_uploads", "expected a value from 1 to 64, got 0"),
        (lambda d, p: d.update(max_uploads=1_000_000_000_000), "max_uploads", "from 1 to 64"),
        (lambda d, p: d["api"].update(read_timeout_seconds=float("inf")), "api.read_timeout_seconds", "finite"),
        (lambda d, p: d.update(max_upload_mbps=float("nan")), "max_upload_mbps", "finite"),
        (lambda d, p: d.update(max_active_jobs=10**400), "max_active_jobs", "from 1 to 10000"),
        (lambda d, p: d["folders"][0].update(modules={}), "folders[0].modules", "is empty"),
        (lambda d, p: d["api"].update(url="ftp//x"), "api.url", "http:// or https:// URL with a host"),
        (lambda d, p: d.update(webhook={"listen": "::1:8787", "callback_url": "https://x/h", "secret_file": "/s"}),
         "webhook.listen", "IPv6 as [::1]:port"),
        (lambda d, p: d.update(folders=[]), "folders", "at least one"),
        (lambda d, p: d["folders"].append(dict(d["folders"][0])), "folders[2].path", "same folder"),
    ],
)
def test_each_validation_error_names_its_key_path(tmp_path, mutate, key_path, fragment):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    data = {"api": {}, "folders": [_folder(tmp_path / "a", sidecars={}), _folder(tmp_path / "b")]}
    mutate(data, tmp_path)
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert caught.value.key_path == key_path
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"{key_path}: ")


def test_valid_config_gives_frozen_values_with_defaults(tmp_path):
    config = parse_config({"folders": [_folder(tmp_path)]})
    folder = config.folders[0]
    assert folder.recursive is True and folder.settle_seconds == 5.0 and folder.sidecars.naming == "auto"
    assert dict(folder.modules) == {"face_recognition": {"model": "celebrities"}}
    with pytest.raises(dataclasses.FrozenInstanceError):
        folder.settle_seconds = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        folder.modules["x"] = {}  # type: ignore[index]


def test_modules_pass_through_unknown_modules_and_options(tmp_path):
    modules = {"future_module": {"new_option": [1, 2], "nested": {"a": True}}, "text_recognition": None}
    config = parse_config({"folders": [{"path": str(tmp_path), "modules": modules}]})
    assert dict(config.folders[0].modules) == {"future_module": modules["future_module"], "text_recognition": {}}


def test_api_key_sources_in_order(tmp_path, monkeypatch):
    key_file = tmp_path / "key"
    key_file.write_text("from-file-123\n")
    api = parse_config({"api": {"key_file": str(key_file)}, "folders": [_folder(tmp_path)]}).api
    assert resolve_api_key(api, {"DEEPVA_API_KEY": "from-env-456"}).reveal() == "from-file-123"
    bare = parse_config({"folders": [_folder(tmp_path)]}).api
    assert resolve_api_key(bare, {"DEEPVA_API_KEY": "from-env-456"}).reveal() == "from-env-456"
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / API_KEY_CREDENTIAL).write_text("from-credential-789")
    assert resolve_api_key(bare, {"CREDENTIALS_DIRECTORY": str(credentials)}).reveal() == "from-credential-789"
    with pytest.raises(ConfigError) as caught:
        resolve_api_key(bare, {})
    assert caught.value.key_path == "api.key_file" and "no API key found" in str(caught.value)


def test_secret_hides_itself():
    secret = Secret("super-secret-key")
    assert "super-secret-key" not in f"{secret} {secret!r} {str(secret)} {[secret]}"
    assert secret.reveal() == "super-secret-key"


def test_example_config_documents_every_key_and_is_valid(tmp_path):
    text = (ROOT / "config.example.yaml").read_text()
    data = yaml.safe_load(text)

    def paths(value, prefix=""):
        if isinstance(value, dict):
            for key, item in value.items():
                if prefix.endswith("modules.") or prefix == "modules.":
                    continue
                yield f"{prefix}{key}"
                if key != "modules":
                    yield from paths(item, f"{prefix}{key}.")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            yield from paths(value[0], prefix[:-1] + "[].")

    documented = set(paths(data))
    assert set(schema_keys()) == documented
    for key in schema_keys():  # each key has a comment line right above it
        leaf = key.rsplit(".", 1)[-1]
        lines = text.splitlines()
        index = next(i for i, line in enumerate(lines) if line.strip().lstrip("- ").startswith(f"{leaf}:"))
        assert lines[index - 1].strip().startswith("#"), f"{key} has no comment"
    data["folders"][0]["path"] = str(tmp_path)
    data["api"]["key_file"] = None
    parse_config(data)


def test_check_config_exits_2_with_one_line_naming_the_key(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"folders": [{"path": str(tmp_path), "modules": "face_recognition"}]}))
    result = subprocess.run(
        [sys.executable, "-m", "deepva_watch", "check-config", "-c", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "deepva-watch: config error: folders[0].modules: expected a mapping of module name to options, got "
        "'face_recognition'"
    )


def test_every_problem_is_reported_in_one_run_one_line_each(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"max_uploads": 0, "api": {"url": "ftp//x", "retries": "often"},
                                      "folders": [{"path": str(tmp_path), "modules": {}}]}))
    result = subprocess.run(
        [sys.executable, "-m", "deepva_watch", "check-config", "-c", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "deepva-watch: config error: folders[0].modules: is empty: name at least one DeepVA module",
        "deepva-watch: config error: api.url: expected an http:// or https:// URL with a host, got 'ftp//x'",
        "deepva-watch: config error: api.retries: expected a whole number, got 'often'",
        "deepva-watch: config error: max_uploads: expected a value from 1 to 64, got 0",
    ]


@pytest.mark.parametrize(("text", "reason"), [
    ("folders:\n\t- path: /x\n", "a tab (indent with spaces)"),
    ("ledger: /a\nledger: /b\n", "the key 'ledger' is given twice in one mapping"),
])
def test_yaml_errors_say_what_is_wrong(tmp_path, text, reason):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert reason in str(caught.value) and "line 2" in str(caught.value)


def test_a_config_that_is_not_utf8_is_one_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_bytes(b"ledger: /var/lib/x\nfolders: [caf\xe9]\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text \\(line 2, byte 32\\)"):
        load_config(config)


def test_run_with_no_key_starts_nothing(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"ledger": str(tmp_path / "l.sqlite3"), "folders": [_folder(tmp_path)]}))
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "deepva_watch", "run", "-c", str(config)], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 2
    assert "api.key_file: no API key found" in result.stderr
    assert not (tmp_path / "l.sqlite3").exists()


def test_yaml_syntax_error_is_reported_with_position(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("folders:\n  - path: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert "is not valid YAML: line 3, column 1: expected ',' or ']'" in str(caught.value)
