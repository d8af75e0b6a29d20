"""One keyword set, written in three fields so that every tool shows the same keywords, whichever field it reads.

* ``dc:subject``: flat keywords, a hierarchical keyword as its leaf only (``Mitte`` for ``Places|Berlin|Mitte``);
* ``lr:hierarchicalSubject``: levels joined with ``|`` (``People|Jane Doe``); a flat keyword is a top-level entry;
* ``digiKam:TagsList``: levels joined with ``/`` (``People/Jane Doe``).

darktable reads ``lr:hierarchicalSubject`` and only without it ``dc:subject``; digiKam reads ``digiKam:TagsList``, then
``lr:hierarchicalSubject``, then ``dc:subject``; Immich reads ``TagsList``, then ``HierarchicalSubject``, then IPTC
``Keywords``; Lightroom reads ``lr:hierarchicalSubject`` and adds the ``dc:subject`` values it cannot find in it. So
every keyword found in any of the fields is written to all of them, each in that field's form.

A ``dc:subject`` value counts as present in the hierarchy when it names any level of a hierarchical keyword, leaf or
ancestor: Lightroom and darktable export the ancestors (``Places``, ``Berlin``) to ``dc:subject`` too, and reading those
back as top-level keywords would invent keywords.

Separators: a separator inside a level would invent a level, so it is written as a character that looks the same and
separates nothing: ``|`` as ``¦`` (in ``lr:hierarchicalSubject``, and in ``dc:subject`` so that Lightroom matches the
two), ``/`` as ``∕`` in ``digiKam:TagsList``. A ``/`` stays a ``/`` elsewhere: ``dc:subject`` is what people search,
and Lightroom, darktable and Immich do not split ``lr:hierarchicalSubject`` at it. digiKam does, when it has no
``TagsList`` to read; so a keyword with a ``/`` in a level gets one written. The user's values are never rewritten,
only our copies of them. Two levels that differ only in these characters are the same level.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from deepva_watch.sidecars.rdf import DC, DIGIKAM, LR, array_texts, q
from deepva_watch.sidecars.text import clean_text

SUBJECT = q(DC, "subject")
HIERARCHICAL = q(LR, "hierarchicalSubject")
TAGS_LIST = q(DIGIKAM, "TagsList")

_PIPE, _SLASH = "\u00a6", "\u2215"  # broken bar, division slash
_BOTH = str.maketrans({"|": _PIPE, "/": _SLASH})


def level(text: str) -> str:
    """What identifies a level in any field: its text with both separators as their look-alikes."""
    return clean_text(text).translate(_BOTH).strip()


@dataclass(frozen=True)
class Keyword:
    """One keyword: its levels as found (a level may hold the separator of a field it was not found in)."""

    path: tuple[str, ...]

    @property
    def key(self) -> tuple[str, ...]:
        """What identifies the keyword in any field."""
        return tuple(level(part) for part in self.path)

    @property
    def leaf(self) -> str:
        """The ``dc:subject`` form."""
        return self.path[-1].replace("|", _PIPE)

    @property
    def hierarchical(self) -> str:
        return "|".join(part.replace("|", _PIPE) for part in self.path)

    @property
    def tags_list(self) -> str:
        return "/".join(part.replace("/", _SLASH) for part in self.path)


def keyword(hierarchy: Sequence[str], label: str) -> Keyword | None:
    """A DeepVA label filed under ``hierarchy`` (levels), or None when it has no text."""
    levels = (clean_text(text).replace("|", _PIPE).strip() for text in (*hierarchy, label))
    path = tuple(part for part in levels if part)
    return Keyword(path) if level(label) else None


def from_flat(value: str) -> Keyword | None:
    return Keyword((value.strip(),)) if value.strip() else None


def from_path(value: str, separator: str) -> Keyword | None:
    """A ``lr:hierarchicalSubject`` (``|``) or ``digiKam:TagsList`` (``/``) value; empty levels are dropped."""
    parts = tuple(part.strip() for part in value.split(separator) if part.strip())
    return Keyword(parts) if parts else None


@dataclass
class KeywordFields:
    """The values of the three keyword fields, in document order."""

    subject: list[str] = field(default_factory=list)
    hierarchical: list[str] = field(default_factory=list)
    tags_list: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, properties: Iterable[ET.Element]) -> KeywordFields:
        """The keyword fields among the properties of a parsed packet."""
        found = cls()
        by_tag = {SUBJECT: found.subject, HIERARCHICAL: found.hierarchical, TAGS_LIST: found.tags_list}
        for prop in properties:
            if prop.tag in by_tag:
                by_tag[prop.tag].extend(array_texts(prop))
        return found

    def extend(self, other: KeywordFields) -> None:
        self.subject.extend(other.subject)
        self.hierarchical.extend(other.hierarchical)
        self.tags_list.extend(other.tags_list)


def synchronise(kept: KeywordFields, ours: Iterable[Keyword], *, tags_list: bool) -> KeywordFields:
    """What to add to each field so that all of them hold every keyword of ``kept`` and ``ours``.

    ``kept`` are the values that stay (the user's, the file's); the answer holds only the additions, so that the caller
    can record them as ours and take them out again on the next run. ``tags_list`` False leaves that field alone,
    unless a keyword holds a ``/`` inside a level.
    """
    hierarchical = [kw for kw in (from_path(value, "|") for value in kept.hierarchical) if kw]
    listed = [kw for kw in (from_path(value, "/") for value in kept.tags_list) if kw]
    our_keywords = list(ours)
    keywords: dict[tuple[str, ...], Keyword] = {}
    for kw in (*hierarchical, *listed):
        keywords.setdefault(kw.key, kw)
    levels = {part for kw in (*keywords.values(), *our_keywords) for part in kw.key}
    for flat in (from_flat(value) for value in kept.subject):
        if flat is not None and flat.key[0] not in levels:
            keywords.setdefault(flat.key, flat)
    for kw in our_keywords:
        keywords.setdefault(kw.key, kw)

    tags_list = tags_list or any("/" in part for kw in keywords.values() for part in kw.path)
    added = KeywordFields()
    leaves = {level(value) for value in kept.subject}
    hierarchical_keys = {kw.key for kw in hierarchical}
    listed_keys = {kw.key for kw in listed}
    for key, kw in keywords.items():
        if key[-1] not in leaves:
            leaves.add(key[-1])
            added.subject.append(kw.leaf)
        if key not in hierarchical_keys:
            hierarchical_keys.add(key)
            added.hierarchical.append(kw.hierarchical)
        if tags_list and key not in listed_keys:
            listed_keys.add(key)
            added.tags_list.append(kw.tags_list)
    return added
