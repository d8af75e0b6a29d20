"""What a scan holds, and what changed: between two scans while polling, or between a scan and the ledger.

A share of a million files is polled every few seconds, so the form of a scan in memory decides both the cycle and
the daemon's size. A flat ``relpath -> (size, mtime_ns)`` dict held about 250 bytes and three tracked Python objects
per file (the garbage collector walked them all), and comparing two such dicts touched every entry. Here each folder
is one :class:`Listing`: its file names joined in one string and their sizes and modification times in two
``array('q')``, about 30 bytes a file and four objects a folder. A folder whose listing is unchanged since the last
scan compares in C (a string and two arrays, ``memcmp``); only a folder that differs is looked at name by name.

The ledger side is read in path order (:meth:`Ledger.latest_versions_page`) and regrouped by folder with
:func:`by_folder`, which holds only the rows of the folders on the current path: a reconcile never builds a
dictionary of every file either.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

#: Joins the names of a listing: the one character no file name can hold.
SEPARATOR = "/"


class Sighting(NamedTuple):
    relpath: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Listing:
    """The candidate files of one folder, in the order the folder listed them."""

    names: str  # joined by SEPARATOR
    sizes: array  # type: ignore[type-arg]  # array('q'), one per name
    mtimes: array  # type: ignore[type-arg]  # array('q'), st_mtime_ns

    def __len__(self) -> int:
        return len(self.sizes)

    def entries(self) -> Iterator[tuple[str, int, int]]:
        """``(name, size, mtime_ns)`` of each file."""
        if not self.sizes:
            return iter(())
        return zip(self.names.split(SEPARATOR), self.sizes, self.mtimes, strict=True)

    def name_set(self) -> set[str]:
        return set(self.names.split(SEPARATOR)) if self.sizes else set()


class Snapshot:
    """One walk of a tree: a :class:`Listing` for each folder listed (an empty one where it held no candidate file),
    keyed by the folder's path relative to the root with a trailing slash (``""`` for the root, ``"day1/cam2/"``)."""

    __slots__ = ("listings", "files")

    def __init__(self) -> None:
        self.listings: dict[str, Listing] = {}
        self.files = 0

    def add(self, prefix: str, names: list[str], sizes: array, mtimes: array) -> Listing:  # type: ignore[type-arg]
        listing = self.listings[prefix] = Listing(SEPARATOR.join(names), sizes, mtimes)
        self.files += len(names)
        return listing

    def __len__(self) -> int:
        return self.files

    def items(self) -> Iterator[tuple[str, tuple[int, int]]]:
        """``(relpath, (size, mtime_ns))`` of every file: for small trees, tools and tests."""
        for prefix, listing in self.listings.items():
            for name, size, mtime_ns in listing.entries():
                yield prefix + name, (size, mtime_ns)

    def keep_from(self, previous: Snapshot, prefixes: tuple[str, ...]) -> None:
        """Take over ``previous``'s listings of the folders below these prefixes (folders that could not be listed
        this time: their files are unknown, not gone)."""
        for prefix, listing in previous.listings.items():
            if prefix.startswith(prefixes) and prefix not in self.listings:
                self.listings[prefix] = listing
                self.files += len(listing)


def folder_changes(prefix: str, before: Listing | None, now: Listing) -> tuple[list[Sighting], list[str]]:
    """One folder listed again: (files new or with another size or mtime, paths gone)."""
    if before == now:
        return [], []  # the common case: one comparison of a string and two arrays, in C
    if before is None:
        return [Sighting(prefix + name, size, mtime) for name, size, mtime in now.entries()], []
    old = {name: (size, mtime) for name, size, mtime in before.entries()}
    changed = [Sighting(prefix + name, size, mtime) for name, size, mtime in now.entries()
               if old.pop(name, None) != (size, mtime)]
    return changed, [prefix + name for name in old]


def unlisted(previous: Snapshot, current: Snapshot) -> Iterator[str]:
    """The paths of the files in folders that ``previous`` listed and ``current`` did not (removed, or unreadable)."""
    for prefix, before in previous.listings.items():
        if prefix not in current.listings:
            yield from (prefix + name for name, _, _ in before.entries())


def changes(previous: Snapshot, current: Snapshot) -> Iterator[tuple[list[Sighting], list[str]]]:
    """For each folder that differs between two scans: (files new or with another size or mtime, paths gone)."""
    for prefix, now in current.listings.items():
        changed, missing = folder_changes(prefix, previous.listings.get(prefix), now)
        if changed or missing:
            yield changed, missing
    yield [], list(unlisted(previous, current))


#: A ledger path's newest version: ``(relpath, size, mtime_ns, state)``.
Known = tuple[str, int, int, str]


def by_folder(rows: Iterable[Known]) -> Iterator[tuple[str, dict[str, Known]]]:
    """Rows in path order, regrouped: each folder once, as ``(prefix, {name: row})``.

    In path order the paths below a folder come together, but a folder's own files are interleaved with its
    sub-folders' (``a/x``, ``a/b/y``, ``a/z``); so the folders on the current path stay open, and each is handed out
    when the walk leaves it for good. Only their rows are held.
    """
    open_folders: list[tuple[str, dict[str, Known]]] = []  # outermost first
    for row in rows:
        relpath = row[0]
        cut = relpath.rfind("/") + 1
        prefix = relpath[:cut]
        while open_folders and not prefix.startswith(open_folders[-1][0]):
            yield open_folders.pop()
        if not open_folders or open_folders[-1][0] != prefix:
            open_folders.append((prefix, {}))
        open_folders[-1][1][relpath[cut:]] = row
    while open_folders:
        yield open_folders.pop()
