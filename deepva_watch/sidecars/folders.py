"""Open the folder a sidecar goes into without leaving the tree it belongs to.

The paths of ``naming`` are only checked as text. Between that check and the write, anyone allowed to make folders in
a share can swap a folder on the way for a symbolic link, and a write by path would follow it out of the tree. So the
configured root (the watched folder, or ``sidecars.output_dir``) is opened once, as the administrator set it up (a
link there is theirs and is followed), and every folder below it is opened relative to the one above, refusing a
symbolic link, ``..`` or anything that is not a folder. Every file operation then goes through the last descriptor.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from deepva_watch.fsutil import LINK_REFUSED, O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW, describe_kind
from deepva_watch.sidecars.model import SidecarSettings
from deepva_watch.sidecars.naming import UnsafeSidecarPath, inside, relative_to_root

_FOLDER_FLAGS = os.O_RDONLY | O_DIRECTORY | O_CLOEXEC


@dataclass(frozen=True)
class OpenFolder:
    """A folder open as ``fd``, and the path it is known by in notes and in what we report as written."""

    path: Path
    fd: int

    def path_of(self, name: str) -> Path:
        return inside(self.path, name)


class SidecarPlace:
    """The folder the sidecars of one media file go into, open for the duration of one write, and the media's own
    folder (the same one unless ``output_dir`` is set), opened only when it is needed."""

    def __init__(self, sidecars: OpenFolder, *, media_folder: OpenFolder | None,
                 media_route: tuple[Path, tuple[str, ...]], follow_links: bool = False) -> None:
        self.sidecars = sidecars
        self._media_folder = media_folder
        self._media_route = media_route
        self._follow_links = follow_links
        self._opened = ExitStack()

    def media_folder(self) -> OpenFolder:
        """The folder the media file is in; raises :class:`UnsafeSidecarPath` or OSError as the walk does."""
        if self._media_folder is None:
            base, parts = self._media_route
            self._media_folder = self._opened.enter_context(
                open_beneath(base, parts, create=False, follow_links=self._follow_links))
        return self._media_folder

    def close(self) -> None:
        self._opened.close()


@contextmanager
def sidecar_place(media_path: Path, *, watch_root: Path, settings: SidecarSettings) -> Iterator[SidecarPlace]:
    """The open sidecar folder for ``media_path``: next to it, or its mirror under ``output_dir`` (made as needed).

    Raises :class:`UnsafeSidecarPath` when a folder on the way is a link or no folder, FileNotFoundError when the
    media's folder is gone.
    """
    parts = relative_to_root(media_path, watch_root).parent.parts
    next_to_media = settings.output_dir is None
    base = Path(watch_root) if next_to_media else Path(os.path.normpath(str(settings.output_dir)))
    follow = settings.follow_links
    with open_beneath(base, parts, create=not next_to_media, follow_links=follow and next_to_media) as folder:
        place = SidecarPlace(folder, media_folder=folder if next_to_media else None,
                             media_route=(Path(watch_root), parts), follow_links=follow)
        try:
            yield place
        finally:
            place.close()


@contextmanager
def open_beneath(base: Path, parts: Sequence[str], *, create: bool,
                 follow_links: bool = False) -> Iterator[OpenFolder]:
    """The folder ``base/parts…``, every part opened relative to the one before without following a link (unless
    ``follow_links``: the administrator chose to follow them there).

    ``create`` makes missing folders (``base`` too), each with ``mkdir`` relative to its parent.
    """
    current = _open_base(base, create=create)
    path = base
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part or "\x00" in part:
                raise UnsafeSidecarPath(f"refused to write sidecars through {path / part}: not a plain folder name")
            inner = _open_part(current, part, path / part, create=create, follow_links=follow_links)
            os.close(current)
            current, path = inner, path / part
        yield OpenFolder(path, current)
    finally:
        os.close(current)


def _open_base(base: Path, *, create: bool) -> int:
    try:
        return os.open(base, _FOLDER_FLAGS)
    except FileNotFoundError:
        if not create:
            raise
    os.makedirs(base, exist_ok=True)
    return os.open(base, _FOLDER_FLAGS)


def _open_part(parent: int, name: str, path: Path, *, create: bool, follow_links: bool) -> int:
    try:
        return _open_folder_at(parent, name, path, follow_links)
    except FileNotFoundError:
        if not create:
            raise
    try:
        os.mkdir(name, dir_fd=parent)
    except FileExistsError:
        pass  # made meanwhile, or something else has the name: opening it checks which
    return _open_folder_at(parent, name, path, follow_links)


def _open_folder_at(parent: int, name: str, path: Path, follow_links: bool) -> int:
    try:
        return os.open(name, _FOLDER_FLAGS | (0 if follow_links else O_NOFOLLOW), dir_fd=parent)
    except OSError as error:
        if error.errno not in LINK_REFUSED:
            raise
    raise UnsafeSidecarPath(f"refused to write sidecars through {path}: it is {_kind(parent, name)}, and no link is "
                            "followed below the configured folder")


def _kind(parent: int, name: str) -> str:
    try:
        return describe_kind(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        return "no longer a folder"
