"""``local_path``: an on-prem DeepVA reads the share itself, under its own name for it.

The API contract allows a "network share or local disk (On-Prem only!)" as a job source, but the server mounts that
share under its own name: ``/srv/media`` here may be ``/mnt/media`` or ``\\\\nas\\share`` there. So this host's path is
translated by the folder's ``path_map`` rules (the longest matching local prefix wins), and a file no rule covers is an
error naming the file and the prefixes, never a guess: a guessed path would make DeepVA fail the job far from its
cause, or analyse a different file.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from deepva_watch.config import FolderConfig, PathMapRule
from deepva_watch.sources.paths import SourceMappingError, checked_path

#: ``\\server\share``, ``D:\media``, ``D:/media`` or anything with a backslash: the DeepVA server runs on Windows
#: and wants ``\`` between segments.
_WINDOWS_REMOTE = re.compile(r"^(\\\\|[A-Za-z]:([\\/]|$))|\\")


class LocalPathSource:
    name = "local_path"
    uploads = False

    def job_source(self, folder: FolderConfig, path: Path, stored_url: str | None) -> str:
        return remote_path(folder, checked_path(folder, path))

    def describe(self, folder: FolderConfig, sample: Path) -> str:
        return f"local_path: {sample} -> {self.job_source(folder, sample, None)}"


def _local_parts(rule: PathMapRule) -> tuple[str, ...]:
    """A rule's local prefix as path components, so trailing slashes do not matter and ``/srv/media`` never matches
    ``/srv/media2``."""
    return PurePosixPath(rule.local.rstrip("/") or "/").parts


def remote_path(folder: FolderConfig, path: PurePosixPath) -> str:
    matches = [rule for rule in folder.path_map if path.parts[: len(_local_parts(rule))] == _local_parts(rule)]
    if not matches:
        prefixes = ", ".join(repr(rule.local) for rule in folder.path_map) or "none"
        raise SourceMappingError(
            f"{str(path)!r} is not under any path_map prefix of folder {str(folder.path)!r} (prefixes: {prefixes}); "
            "add a rule that maps it to the path the DeepVA server sees")
    rule = max(matches, key=lambda candidate: len(_local_parts(candidate)))
    rest = path.parts[len(_local_parts(rule)):]
    return _join_remote(rule.remote, rest, path)


def _join_remote(remote: str, rest: tuple[str, ...], path: PurePosixPath) -> str:
    if not _WINDOWS_REMOTE.search(remote):
        return "/".join((remote.rstrip("/"), *rest)) if rest else (remote.rstrip("/") or "/")
    for segment in rest:
        if "\\" in segment:
            raise SourceMappingError(
                f"{str(path)!r} has a backslash in {segment!r}, which the Windows server would read as a separator")
    base = remote.replace("/", "\\")
    if re.fullmatch(r"[A-Za-z]:", base):
        base += "\\"
    if not rest:
        return base if re.fullmatch(r"[A-Za-z]:\\", base) else base.rstrip("\\")
    return (base if base.endswith("\\") else base + "\\") + "\\".join(rest)
