"""doctor on a healthy setup and on each thing that can be wrong, with real files, a real API and real sockets."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

import yaml

from deepva_watch.commands.common import Progress
from deepva_watch.commands.doctor import folder_checks, inotify_checks, watch_check
from deepva_watch.config import load_config
from tests.commands.conftest import CliResult
from tests.conftest import free_port, write_config

Cli = Callable[..., CliResult]


def _checks(result: CliResult) -> dict[str, dict[str, str]]:
    return {check["name"]: check for check in result.json()["checks"]}


def _setup(tmp_path: Path, api_url: str, **top: Any) -> tuple[Path, Path]:
    watch = tmp_path / "watch"
    watch.mkdir(exist_ok=True)
    return write_config(tmp_path, api_url, [watch], **top), watch


def test_a_healthy_setup_passes_every_check(tmp_path: Path, emulator: Any, cli: Cli) -> None:
    config, watch = _setup(tmp_path, emulator.base_url)
    result = cli("doctor", "-c", str(config), "--json")
    assert result.code == 0, result.out
    assert result.json()["ok"] is True
    checks = _checks(result)
    assert checks["api"]["status"] == "ok"
    assert checks[f"folder {watch}"]["status"] == "ok"
    assert checks[f"sidecars {watch}"]["status"] == "ok"
    assert checks[f"watch {watch}"]["detail"].startswith("file system ")
    assert checks["inotify"]["status"] == "ok"
    assert checks[f"ledger {tmp_path / 'ledger.sqlite3'}"]["status"] == "ok"
    assert any(name.startswith("disk ") for name in checks)
    assert list(watch.iterdir()) == []  # the write probe cleans up after itself
    text = cli("doctor", "-c", str(config))
    assert text.code == 0 and "[ OK ] api:" in text.out and "all checks passed" in text.out


def test_a_broken_config_is_one_failed_check_and_exit_code_2(tmp_path: Path, cli: Cli) -> None:
    config, _ = _setup(tmp_path, "http://127.0.0.1:9/api/v1")
    data = yaml.safe_load(config.read_text())
    data["folders"][0]["modules"] = "face_recognition"
    config.write_text(yaml.safe_dump(data))
    result = cli("doctor", "-c", str(config), "--json")
    assert result.code == 2
    assert result.json() == {"ok": False, "checks": [{
        "name": "config", "status": "fail", "detail": "folders[0].modules: expected a mapping of module name to options, got "
                                                       "'face_recognition'",
        "fix": f"edit {config}; config.example.yaml documents every key; check with: deepva-watch check-config -c {config}",
    }]}
    text = cli("doctor", "-c", str(tmp_path / "missing.yaml"))
    assert text.code == 2 and "[FAIL] config: cannot read config file" in text.out


def test_an_unreachable_api_is_reported_with_a_fix(tmp_path: Path, cli: Cli) -> None:
    config, _ = _setup(tmp_path, f"http://127.0.0.1:{free_port()}/api/v1")  # bound, then closed: nobody listens
    result = cli("doctor", "-c", str(config), "--json")
    assert result.code == 1
    api = _checks(result)["api"]
    assert api["status"] == "fail" and "did not answer" in api["detail"] and "curl" in api["fix"]


def test_a_refused_key_is_reported_without_showing_the_key(tmp_path: Path, emulator: Any, cli: Cli) -> None:
    config, _ = _setup(tmp_path, emulator.base_url)
    wrong_key = "wrong-key-0123456789abcdef"
    (tmp_path / "api-key").write_text(wrong_key + "\n")
    result = cli("doctor", "-c", str(config), "--json")
    assert result.code == 1
    api = _checks(result)["api"]
    assert api["status"] == "fail" and "refused the key (401)" in api["detail"]
    assert wrong_key not in result.out + result.err


def test_key_file_option_overrides_the_config(tmp_path: Path, emulator: Any, cli: Cli) -> None:
    config, _ = _setup(tmp_path, emulator.base_url)
    good = (tmp_path / "api-key").read_text()
    (tmp_path / "api-key").write_text("wrong-key-0123456789abcdef\n")
    (tmp_path / "real-key").write_text(good)
    result = cli("doctor", "-c", str(config), "--json", "--key-file", str(tmp_path / "real-key"))
    assert _checks(result)["api"]["status"] == "ok"


def test_a_sidecar_target_that_cannot_be_written_fails_even_for_root(tmp_path: Path, emulator: Any, cli: Cli) -> None:
    not_a_folder = tmp_path / "sidecars-here"
    not_a_folder.write_text("a file where the sidecar folder should be")
    config, watch = _setup(tmp_path, emulator.base_url, folder={"sidecars": {"output_dir": str(not_a_folder)}})
    result = cli("doctor", "-c", str(config), "--json")
    assert result.code == 1
    check = _checks(result)[f"sidecars {not_a_folder}"]
    assert check["status"] == "fail" and "is not a directory" in check["detail"] and "ReadWritePaths" in check["fix"]

    below_proc = Path("/proc/sys/deepva-watch-sidecars")  # procfs refuses new files, whoever asks
    config, _ = _setup(tmp_path, emulator.base_url, folder={"sidecars": {"output_dir": str(below_proc)}})
    check = _checks(cli("doctor", "-c", str(config), "--json"))[f"sidecars {below_proc}"]
    assert check["status"] == "fail" and "cannot create files in /proc/sys" in check["detail"]


def test_a_missing_folder_and_an_unwritable_ledger_are_reported(tmp_path: Path, emulator: Any, cli: Cli) -> None:
    (tmp_path / "ledger-dir").mkdir()
    config, watch = _setup(tmp_path, emulator.base_url, ledger=str(tmp_path / "ledger-dir"))
    watch.rmdir()
    result = cli("doctor", "-c", str(config), "--json")
    assert result.code == 1
    checks = _checks(result)
    assert checks["config"]["status"] == "fail" and "does not exist" in checks["config"]["detail"]
    assert checks[f"folder {watch}"]["status"] == "fail"
    ledger = checks[f"ledger {tmp_path / 'ledger-dir'}"]
    assert ledger["status"] == "fail" and "cannot be written" in ledger["detail"]


def test_inotify_limit_against_the_folder_count(tmp_path: Path) -> None:
    watch = tmp_path / "watch"
    for index in range(5):
        (watch / f"day-{index}" / "cam").mkdir(parents=True)
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9/api/v1", [watch], folder={"watch": "events"}))
    limit = tmp_path / "max_user_watches"
    no_processes = tmp_path / "proc"
    no_processes.mkdir()
    fixes = []
    for value, expected in (("8", "fail"), ("12", "warn"), ("1000", "ok")):
        limit.write_text(value + "\n")
        (check,) = inotify_checks(config, limit, no_processes)
        assert check.status == expected
        assert check.detail.startswith(f"11 folder(s) to watch, limit {value}")
        fixes.append(check.fix)
    assert "fs.inotify.max_user_watches=524288" in fixes[0]
    polled = load_config(write_config(tmp_path, "http://127.0.0.1:9/api/v1", [watch], folder={"watch": "poll"}))
    assert list(inotify_checks(polled, limit, no_processes)) == []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_shown_on_a_terminal_only() -> None:
    terminal = _Terminal()
    progress = Progress("counting", terminal, every=0)
    for count in (1, 4):
        progress.update(count)
    progress.done()
    assert terminal.getvalue().startswith("\rcounting: 1") and terminal.getvalue().endswith("\rcounting: 4\n")
    pipe = io.StringIO()
    quiet = Progress("counting", pipe, every=0)
    quiet.update(3)
    quiet.done()
    assert pipe.getvalue() == ""


class _SilentObserver:
    """An observer that starts and delivers nothing: what a deaf file system or a broken library looks like."""

    def stop(self) -> None:
        pass

    def join(self, timeout: float | None = None) -> None:
        pass


def _silent(path: str, handler: Any, **options: Any) -> _SilentObserver:
    return _SilentObserver()


def test_the_events_check_proves_delivery_with_a_probe(tmp_path: Path) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9/api/v1", [watch], folder={"watch": "events"}))
    check = watch_check(config.folders[0])
    assert check.status == "ok", check
    assert "proven by a probe" in check.detail
    assert list(watch.iterdir()) == [], "the probe folder is removed"


def test_the_events_check_fails_when_no_event_arrives(tmp_path: Path) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9/api/v1", [watch], folder={"watch": "events"}))
    checks = {check.name: check for check in folder_checks(config.folders[0], observer_factory=_silent)}
    check = checks[f"watch {watch}"]
    assert check.status == "fail"
    assert "no create and close-write event" in check.detail
    assert "watch: poll" in check.fix
    assert list(watch.iterdir()) == []
