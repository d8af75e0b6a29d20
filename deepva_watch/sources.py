"""What DeepVA is given for a file: the path the DeepVA server sees, or a public URL.

Uploading suits DeepVA Cloud. An on-prem DeepVA reads the share itself (the API contract allows a "network share or local
disk (On-Prem only!)" as a job source), but it mounts that share under its own name: ``/srv/media`` here may be
``/mnt/media`` or ``\\\\nas\\share`` there. So ``local_path`` sends this host's path translated by the folder's
``path_map`` rules, and a file no rule covers is an error naming the file and the prefixes, never a guess: a guessed path
would make DeepVA fail the job far from its cause, or worse, analyse a different file. ``url`` sends ``url_prefix`` plus
the path relative to the folder, each segment percent-encoded, for sites that publish their media over HTTP.

The paths handled here are this host's (POSIX) paths; only the remote side of a rule may be Windows or UNC.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from deepva_watch.config import FolderConfig, PathMapRule

#: ``\\server\share``, ``D:\media``, ``D:/media`` or anything with a backslash: the DeepVA server runs on Windows
#: and wants ``\`` between segments.
_WINDOWS_REMOTE = re.compile(r"^(\\\\|[A-Za-z]:([\\/]|$))|\\")


class SourceMappingError(ValueError):
    """This file cannot be given to DeepVA as configured (outside every ``path_map`` rule, or outside its folder).

    A permanent problem of this file under this config: recording it and moving on is right, retrying is not.
    """


def job_source(folder: FolderConfig, path: Path) -> str:
    """The job source DeepVA gets for ``path`` (absolute, inside ``folder.path``) under the folder's source mode.

    Raises :class:`SourceMappingError` for a file that cannot be mapped, and ``ValueError`` for ``upload`` folders,
    whose source is the storage URL known only once the upload is done.
    """
    if folder.source == "local_path":
        return _remote_path(folder, _checked_path(folder, path))
    if folder.source == "url":
        return _url(folder, _relative_parts(folder, _checked_path(folder, path)))
    if folder.source == "upload":
        raise ValueError("folders with source 'upload' have no job source until the file is stored in DeepVA storage")
    raise ValueError(f"unknown source mode {folder.source!r}")


def describe_source(folder: FolderConfig, sample_relpath: str = "example/clip.mxf") -> str:
    """One line for ``check-config``/``doctor``: what a sample file in this folder would be sent as, so an operator
    can see a mapping is right before the first real file goes out."""
    sample = Path(folder.path) / sample_relpath
    if folder.source == "upload":
        return f"upload: {sample} -> uploaded to DeepVA storage folder {folder.storage_folder!r}; its storage URL is the source"
    try:
        return f"{folder.source}: {sample} -> {job_source(folder, sample)}"
    except ValueError as error:
        return f"{folder.source}: {sample} -> error: {error}"


# -- checks -------------------------------------------------------------------------------------------------------------


def _checked_path(folder: FolderConfig, path: Path) -> PurePosixPath:
    """The file's absolute path as given, refused unless it lies inside the folder.

    Symlinks are not resolved on purpose: DeepVA opens the path through its own mount, where this host's link targets
    may not exist; a path that merely *spells* its way out with ``..`` is refused instead.
    """
    given = PurePosixPath(path)
    if not given.is_absolute():
        raise SourceMappingError(f"{str(path)!r} is not an absolute path")
    if ".." in given.parts:
        raise SourceMappingError(f"{str(path)!r} contains '..'; refusing a path that may lead outside its folder")
    _relative_parts(folder, given)
    return given


def _relative_parts(folder: FolderConfig, path: PurePosixPath) -> tuple[str, ...]:
    root = PurePosixPath(folder.path).parts
    if path.parts[: len(root)] != root or len(path.parts) == len(root):
        raise SourceMappingError(f"{str(path)!r} is not a file inside the watched folder {str(folder.path)!r}")
    return path.parts[len(root):]


# -- local_path ---------------------------------------------------------------------------------------------------------


def _local_parts(rule: PathMapRule) -> tuple[str, ...]:
    """A rule's local prefix as path components, so trailing slashes do not matter and ``/srv/media`` never matches
    ``/srv/media2``."""
    return PurePosixPath(rule.local.rstrip("/") or "/").parts


def _remote_path(folder: FolderConfig, path: PurePosixPath) -> str:
    matches = [rule for rule in folder.path_map if path.parts[: len(_local_parts(rule))] == _local_parts(rule)]
    if not matches:
        prefixes = ", ".join(repr(rule.local) for rule in folder.path_map) or "none"
        raise SourceMappingError(
            f"{str(path)!r} is not under any path_map prefix of folder {str(folder.path)!r} (prefixes: {prefixes}); "
            "add a rule that maps it to the path the DeepVA server sees"
        )
    rule = max(matches, key=lambda candidate: len(_local_parts(candidate)))
    rest = path.parts[len(_local_parts(rule)):]
    return _join_remote(rule.remote, rest, path)


def _join_remote(remote: str, rest: tuple[str, ...], path: PurePosixPath) -> str:
    if not _WINDOWS_REMOTE.search(remote):
        return "/".join((remote.rstrip("/"), *rest)) if rest else (remote.rstrip("/") or "/")
    for segment in rest:
        if "\\" in segment:
            raise SourceMappingError(
                f"{str(path)!r} has a backslash in {segment!r}, which the Windows server would read as a separator"
            )
    base = remote.replace("/", "\\")
    if re.fullmatch(r"[A-Za-z]:", base):
        base += "\\"
    if not rest:
        return base if re.fullmatch(r"[A-Za-z]:\\", base) else base.rstrip("\\")
    return (base if base.endswith("\\") else base + "\\") + "\\".join(rest)


# -- url ----------------------------------------------------------------------------------------------------------------


def _url(folder: FolderConfig, rest: tuple[str, ...]) -> str:
    """Each segment encoded on its own (``safe=""``), so ``#``, ``?`` and ``%`` in a name stay part of that name and
    the ``/`` between segments stays a separator; non-ASCII goes as UTF-8, as browsers and web servers expect."""
    if not folder.url_prefix:
        raise SourceMappingError(f"folder {str(folder.path)!r} has source 'url' but no url_prefix")
    return folder.url_prefix.rstrip("/") + "/" + "/".join(quote(segment, safe="") for segment in rest)
