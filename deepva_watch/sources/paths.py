"""Checks every source shares: a file's path as given, refused unless it lies inside its folder.

The paths handled here are this host's (POSIX) paths; only the remote side of a ``path_map`` rule may be Windows.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from deepva_watch.config import FolderConfig


class SourceMappingError(ValueError):
    """This file cannot be given to DeepVA as configured (outside every ``path_map`` rule, or outside its folder).

    A permanent problem of this file under this config: recording it and moving on is right, retrying is not.
    """


def checked_path(folder: FolderConfig, path: Path) -> PurePosixPath:
    """Symlinks are not resolved on purpose: DeepVA opens the path through its own mount, where this host's link
    targets may not exist; a path that merely *spells* its way out with ``..`` is refused instead."""
    given = PurePosixPath(path)
    if not given.is_absolute():
        raise SourceMappingError(f"{str(path)!r} is not an absolute path")
    if ".." in given.parts:
        raise SourceMappingError(f"{str(path)!r} contains '..'; refusing a path that may lead outside its folder")
    relative_parts(folder, given)
    return given


def relative_parts(folder: FolderConfig, path: PurePosixPath) -> tuple[str, ...]:
    root = PurePosixPath(folder.path).parts
    if path.parts[: len(root)] != root or len(path.parts) == len(root):
        raise SourceMappingError(f"{str(path)!r} is not a file inside the watched folder {str(folder.path)!r}")
    return path.parts[len(root):]
