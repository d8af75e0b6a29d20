"""On-prem installs: job sources that are paths on a disk the server itself can see.

A real on-prem DeepVA reads the broadcaster's share directly, so the job's source is the path *as the server sees it*
(``/mnt/media/news/clip.mp4`` or ``\\\\nas\\share\\news\\clip.mp4``). The emulator runs on the same machine as the tests,
so ``EmulatorConfig.onprem_roots`` maps each server-view prefix to the local directory it stands for. Tests can then
give the watch host a different view of the same files than the server, exactly as on a real site, and a client that
forgets to translate a path is refused as a real server would refuse it.

A path is accepted only when it lies under a configured prefix (compared component by component; case-insensitively
for Windows and UNC paths, whose separators may be ``\\`` or ``/``), contains no ``..`` component, still lies under the
root after symbolic links are resolved, and names a readable regular file. Error messages show only the server-view
path, never where the emulator keeps the files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class PathNotReadable(ValueError):
    """The server could not read this path; the message is safe to return to the client."""


@dataclass(frozen=True)
class ServerPath:
    """A path split into comparable components; ``windows`` paths compare case-insensitively."""

    windows: bool
    parts: tuple[str, ...]

    def key(self) -> tuple[str, ...]:
        return tuple(part.lower() for part in self.parts) if self.windows else self.parts


def parse_server_path(text: str) -> ServerPath | None:
    """POSIX ``/a/b``, UNC ``\\\\server\\share\\a`` and drive ``C:\\a`` paths; None for anything else.

    The UNC marker and the drive letter become the first components (``"\\\\"`` and ``"c:"``), so a UNC prefix can only
    match a UNC path and a drive only its own drive.
    """
    if text.startswith("/") and not text.startswith("//"):
        return ServerPath(False, tuple(part for part in text.split("/") if part not in ("", ".")))
    normalized = text.replace("/", "\\")
    if normalized.startswith("\\\\"):
        rest = [part for part in normalized[2:].split("\\") if part not in ("", ".")]
        return ServerPath(True, ("\\\\", *rest))
    if len(normalized) >= 3 and normalized[0].isalpha() and normalized[1] == ":" and normalized[2] == "\\":
        rest = [part for part in normalized[3:].split("\\") if part not in ("", ".")]
        return ServerPath(True, (normalized[:2].lower(), *rest))
    return None


class OnPremRoots:
    """The configured prefixes, longest first, so nested shares map to the most specific local directory."""

    def __init__(self, roots: Mapping[str, Path]) -> None:
        parsed: list[tuple[ServerPath, Path]] = []
        for prefix, local in roots.items():
            server_path = parse_server_path(prefix)
            if server_path is None:
                raise ValueError(f"on-prem root {prefix!r} is not an absolute POSIX, UNC or drive path")
            parsed.append((server_path, Path(local)))
        parsed.sort(key=lambda item: len(item[0].parts), reverse=True)
        self._roots = parsed

    def __bool__(self) -> bool:
        return bool(self._roots)

    def local_file(self, source: str) -> Path:
        """Where the server-view ``source`` lives on this machine; raises :class:`PathNotReadable` otherwise."""
        refusal = f"source {source} is not readable by the server"
        server_path = parse_server_path(source)
        if server_path is None:
            raise PathNotReadable(f"{refusal}: not an absolute path")
        if ".." in server_path.parts:
            raise PathNotReadable(f"{refusal}: '..' is not allowed in a path")
        for prefix, local_root in self._roots:
            if prefix.windows != server_path.windows:
                continue
            length = len(prefix.parts)
            if server_path.key()[:length] != prefix.key():
                continue
            relative = server_path.parts[length:]
            if not relative:
                raise PathNotReadable(f"{refusal}: it is a folder, not a file")
            candidate = local_root.joinpath(*relative)
            return _readable_file(candidate, local_root, refusal)
        raise PathNotReadable(f"{refusal}: it is outside every share this server can see")


def _readable_file(candidate: Path, root: Path, refusal: str) -> Path:
    try:
        resolved = candidate.resolve(strict=True)
        resolved_root = root.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        raise PathNotReadable(f"{refusal}: no such file") from None
    if not resolved.is_relative_to(resolved_root):
        raise PathNotReadable(f"{refusal}: it leads outside the share")
    if not resolved.is_file():
        raise PathNotReadable(f"{refusal}: not a regular file")
    try:
        with resolved.open("rb"):
            pass
    except OSError:
        raise PathNotReadable(f"{refusal}: permission denied") from None
    if not os.access(resolved, os.R_OK):  # pragma: no cover - open() above already says so
        raise PathNotReadable(f"{refusal}: permission denied")
    return resolved
