"""The XMP sidecar: keywords, people, face regions and time-coded markers, merged into whatever is already there.

Keywords: ``dc:subject``, ``lr:hierarchicalSubject`` and, where one exists or the folder asks for it,
``digiKam:TagsList`` end up holding the same keyword set: ours, and every keyword already in any of them (see
``keywords``). A sidecar we create also takes in the media file's own keywords (see ``embedded``).

Ownership rule (what a re-run replaces): our provenance block (``dvw:``) records exactly the keyword values, regions
and single properties we added, including the copies of other keywords we made to keep the fields in step. In the two
hierarchical fields a keyword is ours by its path, so that the copy digiKam makes of our ``People|Jane Doe`` as
``People/Jane Doe`` goes with it. On the next run those are removed and the new results added; everything else stays.
A value that was already present before our first write is never recorded as ours, so it survives every re-run, as
does anything a person adds between runs — unless it is a value we had added ourselves and the new results no longer
contain (we cannot tell the two apart, and the newest results win). Tracks we write are named ``DeepVA`` and are
replaced as a whole; any other track, region or property is copied through untouched.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from deepva_watch.media import MediaFacts
from deepva_watch.sidecars.collect import Collected, Marker, Region
from deepva_watch.sidecars.json_sidecar import iso_utc
from deepva_watch.sidecars.keywords import (
    HIERARCHICAL,
    SUBJECT,
    TAGS_LIST,
    KeywordFields,
    from_path,
    level,
    synchronise,
)
from deepva_watch.sidecars.model import Provenance
from deepva_watch.sidecars.rdf import (
    DVW,
    IPTC_EXT,
    MWG_RS,
    PHOTOSHOP,
    RDF_LI,
    ST_AREA,
    ST_DIM,
    XMP_DM,
    ParsedPacket,
    array,
    array_items,
    array_texts,
    q,
    read_properties,
    resource,
    resource_items,
    serialize_packet,
    simple,
    struct_fields,
    text_of,
)
from deepva_watch.sidecars.text import format_decimal, json_safe
from deepva_watch.sidecars.timing import frame_rate_text, scale_text, seconds_to_units, timecode_format

TRACK_NAME = "DeepVA"

PERSON_IN_IMAGE = q(IPTC_EXT, "PersonInImage")
ANCESTORS = "ancestors"  # a key of the additions: levels claimed in dc:subject, never written there
REGIONS = q(MWG_RS, "Regions")
TRACKS = q(XMP_DM, "Tracks")
DURATION = q(XMP_DM, "duration")
START_TIMECODE = q(XMP_DM, "startTimecode")
SIDECAR_FOR_EXTENSION = q(PHOTOSHOP, "SidecarForExtension")
_OWNABLE_SINGLES = {DURATION: "xmpDM:duration", START_TIMECODE: "xmpDM:startTimecode",
                    SIDECAR_FOR_EXTENSION: "photoshop:SidecarForExtension"}


@dataclass(frozen=True)
class ExistingSidecar:
    """A sidecar already on disk, read as RDF, with what our last write recorded about it."""

    packet: ParsedPacket

    def _dvw(self, local: str) -> list[ET.Element]:
        return [prop for prop in self.packet.properties if prop.tag == q(DVW, local)]

    def _dvw_text(self, local: str) -> str | None:
        found = self._dvw(local)
        return text_of(found[0]) if found else None

    def provenance(self, local: str) -> str | None:
        """One field of our provenance block (``JobId``, ``SourceHash``, ``Modules`` …), or None."""
        return self._dvw_text(local)

    def dvw_bag(self, local: str) -> set[str]:
        return {text for prop in self._dvw(local) for text in array_texts(prop)}

    @property
    def written_by_us(self) -> bool:
        return bool(self._dvw_text("JobId") or self._dvw_text("AssetId"))

    @property
    def source_name(self) -> str | None:
        """The media file name our last write recorded."""
        return self._dvw_text("SourceName") or None

    @property
    def sidecar_for_extension(self) -> str | None:
        found = [prop for prop in self.packet.properties if prop.tag == SIDECAR_FOR_EXTENSION]
        return (text_of(found[0]) or None) if found else None


def parse_sidecar(data: bytes) -> ExistingSidecar:
    """Raises :class:`NotAnXmpPacket` for bytes that are not XML with an rdf:RDF inside (see ``claim`` for how a
    sidecar on disk is read)."""
    return ExistingSidecar(read_properties(data))


@dataclass(frozen=True)
class XmpContent:
    collected: Collected
    media: MediaFacts
    provenance: Provenance
    source_name: str
    sidecar_for_extension: str | None  # set when the sidecar is named after the stem
    tags_list: bool = False  # write digiKam:TagsList even where the sidecar has none
    embedded: KeywordFields | None = None  # the media file's own keywords; used only when no sidecar exists yet


@dataclass
class _Owned:
    subjects: set[str] = field(default_factory=set)
    hierarchical: set[str] = field(default_factory=set)
    tags_list: set[str] = field(default_factory=set)
    people: set[str] = field(default_factory=set)
    regions: set[str] = field(default_factory=set)
    properties: set[str] = field(default_factory=set)

    @classmethod
    def from_existing(cls, existing: ExistingSidecar | None) -> _Owned:
        if existing is None or not existing.written_by_us:
            return cls()
        return cls(
            subjects=existing.dvw_bag("OwnedSubjects") | existing.dvw_bag("OwnedAncestors"),
            hierarchical=existing.dvw_bag("OwnedHierarchical"),
            tags_list=existing.dvw_bag("OwnedTagsList"),
            people=existing.dvw_bag("OwnedPeople"),
            regions=existing.dvw_bag("OwnedRegions"),
            properties=existing.dvw_bag("OwnedProperties"),
        )

    def owns(self, tag: str, value: str) -> bool:
        """Whether a keyword field's value is one we wrote last time."""
        if tag == SUBJECT:
            return value in self.subjects
        if tag == PERSON_IN_IMAGE:
            return value in self.people
        found = from_path(value, "|" if tag == HIERARCHICAL else "/")
        return found is not None and found.key in self._keys

    @cached_property
    def _keys(self) -> set[tuple[str, ...]]:
        values = [(value, "|") for value in self.hierarchical] + [(value, "/") for value in self.tags_list]
        return {found.key for value, separator in values if (found := from_path(value, separator)) is not None}


def render_xmp(existing: ExistingSidecar | None, content: XmpContent, *, toolkit: str) -> bytes:
    """The new sidecar's bytes: ``existing`` with our previous contribution replaced by ``content``."""
    owned = _Owned.from_existing(existing)
    ours_before = existing is not None and existing.written_by_us
    foreign: list[ET.Element] = []
    theirs: dict[str, list[str]] = {SUBJECT: [], HIERARCHICAL: [], TAGS_LIST: [], PERSON_IN_IMAGE: []}
    has_tags_list = content.tags_list
    regions_prop: ET.Element | None = None
    tracks_prop: ET.Element | None = None
    kept_singles: set[str] = set()
    for prop in existing.packet.properties if existing else []:
        if prop.tag.startswith(f"{{{DVW}}}"):
            continue
        if prop.tag in theirs:
            theirs[prop.tag].extend(text for text in array_texts(prop) if not owned.owns(prop.tag, text))
            has_tags_list = has_tags_list or prop.tag == TAGS_LIST
        elif prop.tag == REGIONS and regions_prop is None:
            regions_prop = prop
        elif prop.tag == TRACKS and tracks_prop is None:
            tracks_prop = prop
        elif prop.tag in _OWNABLE_SINGLES and _OWNABLE_SINGLES[prop.tag] in owned.properties:
            continue  # ours from last time: replaced below
        else:
            if prop.tag in _OWNABLE_SINGLES:
                kept_singles.add(prop.tag)
            foreign.append(prop)

    if existing is None and content.embedded is not None:
        # The file's own keywords become the user's in the new sidecar: kept on every re-run, like theirs.
        theirs[SUBJECT].extend(content.embedded.subject)
        theirs[HIERARCHICAL].extend(content.embedded.hierarchical)
        theirs[TAGS_LIST].extend(content.embedded.tags_list)
        has_tags_list = has_tags_list or bool(content.embedded.tags_list)

    collected = content.collected
    result = list(foreign)
    kept = {tag: _unique(values) for tag, values in theirs.items()}
    added = _keyword_additions(kept, collected, tags_list=has_tags_list)
    for tag in (SUBJECT, HIERARCHICAL, TAGS_LIST, PERSON_IN_IMAGE):
        if kept[tag] or added[tag]:
            container = "Seq" if tag == TAGS_LIST else "Bag"
            result.append(array(tag, kept[tag] + added[tag], container=container))

    regions, region_fingerprints = _regions(regions_prop, owned.regions, collected.regions, content.media)
    if regions is not None:
        result.append(regions)
    tracks = _tracks(tracks_prop, ours_before, collected)
    if tracks is not None:
        result.append(tracks)

    owned_properties: list[str] = []
    for tag, element in _singles(content).items():
        if tag not in kept_singles:
            result.append(element)
            owned_properties.append(_OWNABLE_SINGLES[tag])

    result.extend(_provenance(content, added, region_fingerprints, owned_properties))
    prefixes = existing.packet.prefixes if existing else {}
    return serialize_packet(result, known_prefixes=prefixes, toolkit=toolkit)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))


def _keyword_additions(kept: dict[str, list[str]], collected: Collected, *, tags_list: bool) -> dict[str, list[str]]:
    """Per field, the values we add; under ``ANCESTORS`` the levels above our keywords that we claim in dc:subject.

    Lightroom and darktable copy every level of a hierarchical keyword into dc:subject. Once our People|Jane Doe is
    gone, a copied "People" would otherwise stand alone as a keyword; claimed, it goes with the keyword it came from.
    A level that was in dc:subject before is never claimed.
    """
    synced = synchronise(KeywordFields(kept[SUBJECT], kept[HIERARCHICAL], kept[TAGS_LIST]), collected.keywords,
                         tags_list=tags_list)
    added: dict[str, list[str]] = {}
    for tag, new_values in ((SUBJECT, synced.subject), (HIERARCHICAL, synced.hierarchical),
                            (TAGS_LIST, synced.tags_list), (PERSON_IN_IMAGE, collected.people)):
        added[tag] = [value for value in _unique(new_values) if value not in set(kept[tag])]
    ours_added = set(added[HIERARCHICAL])
    in_subject = {level(value) for value in kept[SUBJECT]}
    added[ANCESTORS] = _unique(part for kw in collected.keywords if kw.hierarchical in ours_added
                               for part in kw.key[:-1] if part not in in_subject)
    return added


# --- regions --------------------------------------------------------------------------------------------------------


def _regions(
    existing: ET.Element | None, owned: set[str], ours: list[Region], media: MediaFacts
) -> tuple[ET.Element | None, list[str]]:
    their_items: list[ET.Element] = []
    their_dimensions: ET.Element | None = None
    other_fields: list[ET.Element] = []
    if existing is not None:
        for name, value in struct_fields(existing).items():
            if name == q(MWG_RS, "AppliedToDimensions"):
                their_dimensions = value
            elif name == q(MWG_RS, "RegionList"):
                their_items = [item for item in array_items(value) if _region_fingerprint(item) not in owned]
            else:
                other_fields.append(value)
    # Like keywords: a region that was there before (same name, type and area) stays theirs and is not added twice.
    theirs = {_region_fingerprint(item) for item in their_items}
    our_items = []
    fingerprints = []
    for region in ours:
        item = _region_item(region)
        fingerprint = _region_fingerprint(item) or ""
        if fingerprint not in theirs and fingerprint not in fingerprints:
            our_items.append(item)
            fingerprints.append(fingerprint)
    if not (their_items or our_items or other_fields):
        return None, []
    regions = resource(REGIONS)
    if our_items and media.width and media.height:
        regions.append(ET.Element(q(MWG_RS, "AppliedToDimensions"), {
            q(ST_DIM, "w"): str(media.width), q(ST_DIM, "h"): str(media.height), q(ST_DIM, "unit"): "pixel"}))
    elif their_dimensions is not None:
        # Without the image size we leave theirs in place; our areas are normalised and need no dimensions to be read.
        regions.append(their_dimensions)
    regions.append(resource_items(q(MWG_RS, "RegionList"), [*their_items, *our_items]))
    regions.extend(other_fields)
    return regions, fingerprints


def _region_item(region: Region) -> ET.Element:
    box = region.box
    item = resource(RDF_LI)
    item.append(simple(q(MWG_RS, "Name"), region.name))
    item.append(simple(q(MWG_RS, "Type"), "Face"))
    item.append(ET.Element(q(MWG_RS, "Area"), {
        q(ST_AREA, "x"): format_decimal(box.x + box.w / 2),
        q(ST_AREA, "y"): format_decimal(box.y + box.h / 2),
        q(ST_AREA, "w"): format_decimal(box.w),
        q(ST_AREA, "h"): format_decimal(box.h),
        q(ST_AREA, "unit"): "normalized",
    }))
    return item


def _fingerprint(name: str, kind: str, x: float, y: float, w: float, h: float) -> str:
    """Identifies a region we wrote even after another tool rewrote its numbers with other precision."""
    return f"{kind}|{','.join(format(value, '.4f') for value in (x, y, w, h))}|{name}"


def _region_fingerprint(item: ET.Element) -> str | None:
    fields = struct_fields(item)
    area = fields.get(q(MWG_RS, "Area"))
    if area is None:
        return None
    area_fields = struct_fields(area)
    try:
        numbers = [float(text_of(area_fields.get(q(ST_AREA, key))) or "") for key in ("x", "y", "w", "h")]
    except ValueError:
        return None
    return _fingerprint(text_of(fields.get(q(MWG_RS, "Name"))) or "", text_of(fields.get(q(MWG_RS, "Type"))) or "",
                        *numbers)


# --- tracks ---------------------------------------------------------------------------------------------------------


def _tracks(existing: ET.Element | None, ours_before: bool, collected: Collected) -> ET.Element | None:
    their_tracks = []
    if existing is not None:
        for item in array_items(existing):
            name = text_of(struct_fields(item).get(q(XMP_DM, "trackName")))
            if not (ours_before and name == TRACK_NAME):
                their_tracks.append(item)
    our_tracks = []
    if collected.markers and collected.marker_rate is not None:
        track = resource(RDF_LI)
        track.append(simple(q(XMP_DM, "trackName"), TRACK_NAME))
        track.append(simple(q(XMP_DM, "trackType"), "Comment"))
        track.append(simple(q(XMP_DM, "frameRate"), frame_rate_text(collected.marker_rate)))
        track.append(resource_items(q(XMP_DM, "markers"), [_marker(m) for m in collected.markers], container="Seq"))
        our_tracks.append(track)
    if not (their_tracks or our_tracks):
        return None
    return resource_items(TRACKS, [*their_tracks, *our_tracks])


def _marker(marker: Marker) -> ET.Element:
    item = resource(RDF_LI)
    item.append(simple(q(XMP_DM, "startTime"), str(marker.start)))
    item.append(simple(q(XMP_DM, "duration"), str(marker.duration)))
    item.append(simple(q(XMP_DM, "name"), marker.name))
    item.append(simple(q(XMP_DM, "comment"), marker.comment))
    if marker.box is not None:
        param = resource(RDF_LI)
        param.append(simple(q(XMP_DM, "key"), "ai:bbox"))
        box = marker.box
        param.append(simple(q(XMP_DM, "value"), ",".join(format_decimal(v, 4) for v in (box.x, box.y, box.w, box.h))))
        item.append(resource_items(q(XMP_DM, "cuePointParams"), [param], container="Seq"))
    return item


# --- single properties and provenance -------------------------------------------------------------------------------


def _singles(content: XmpContent) -> dict[str, ET.Element]:
    media = content.media
    singles: dict[str, ET.Element] = {}
    if content.sidecar_for_extension:
        singles[SIDECAR_FOR_EXTENSION] = simple(SIDECAR_FOR_EXTENSION, content.sidecar_for_extension)
    if media.kind == "video" and media.duration_seconds is not None and media.duration_seconds >= 0:
        # Premiere's Time form: value in units of scale seconds. ExifTool reads it as Duration {Value, Scale}.
        duration = resource(DURATION)
        if media.frame_rate:
            duration.append(simple(q(XMP_DM, "value"), str(seconds_to_units(media.duration_seconds, media.frame_rate))))
            duration.append(simple(q(XMP_DM, "scale"), scale_text(media.frame_rate)))
        else:
            duration.append(simple(q(XMP_DM, "value"), format_decimal(media.duration_seconds, 3)))
            duration.append(simple(q(XMP_DM, "scale"), "1/1"))
        singles[DURATION] = duration
    if media.kind == "video" and media.start_timecode:
        timecode = resource(START_TIMECODE)
        time_format = timecode_format(media.frame_rate, media.start_timecode)
        if time_format:
            timecode.append(simple(q(XMP_DM, "timeFormat"), time_format))
        timecode.append(simple(q(XMP_DM, "timeValue"), media.start_timecode))
        singles[START_TIMECODE] = timecode
    return singles


def _provenance(
    content: XmpContent, added: dict[str, list[str]], region_fingerprints: list[str], owned_properties: list[str]
) -> list[ET.Element]:
    provenance = content.provenance
    props = [
        simple(q(DVW, "JobId"), provenance.job_id),
        simple(q(DVW, "AssetId"), provenance.asset_id),
        simple(q(DVW, "SourceName"), content.source_name),
        simple(q(DVW, "SourceHash"), provenance.source_hash),
        simple(q(DVW, "Modules"), json.dumps(json_safe(provenance.modules), ensure_ascii=False, sort_keys=True)),
        simple(q(DVW, "ProcessedAt"), iso_utc(provenance.processed_at) or ""),
        simple(q(DVW, "DaemonVersion"), provenance.daemon_version),
    ]
    for local, values in (("OwnedSubjects", added[SUBJECT]), ("OwnedHierarchical", added[HIERARCHICAL]),
                          ("OwnedTagsList", added[TAGS_LIST]), ("OwnedAncestors", added[ANCESTORS]),
                          ("OwnedPeople", added[PERSON_IN_IMAGE]), ("OwnedRegions", region_fingerprints),
                          ("OwnedProperties", owned_properties)):
        if values:
            props.append(array(q(DVW, local), values))
    return props
