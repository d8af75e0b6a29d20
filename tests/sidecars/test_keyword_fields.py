"""The keyword fields in detail: separators inside labels, the TagsList switch, the media file's own keywords."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from deepva_watch.sidecars import SidecarSettings
from deepva_watch.sidecars.embedded import read_embedded_keywords
from deepva_watch.sidecars.keywords import KeywordFields
from tests.sidecars.tools import exiv2_read, field_paths, shown_by_each_tool

FIXTURES = Path(__file__).parent / "fixtures"
LIGHTROOM_MUSIC = """<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:lr="http://ns.adobe.com/lightroom/1.0/">
   <dc:subject><rdf:Bag><rdf:li>AC/DC</rdf:li><rdf:li>Music</rdf:li></rdf:Bag></dc:subject>
   <lr:hierarchicalSubject><rdf:Bag><rdf:li>Music|AC/DC</rdf:li></rdf:Bag></lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def test_a_separator_inside_a_label_invents_no_level_in_any_tool(publish, make) -> None:
    labels = ["AC/DC", "Rock|Pop"]
    segments = [make.segment(label, module="object_scene_recognition", kind="object", media_type="image")
                for label in labels]
    written = publish("poster.jpg", segments, media=make.IMAGE)
    xmp = exiv2_read(written.xmp)
    # dc:subject as people search it, but its '|' like the hierarchy's, so that Lightroom finds each leaf there.
    assert xmp["Xmp.dc.subject"] == ["AC/DC", "Rock\u00a6Pop"]
    assert xmp["Xmp.lr.hierarchicalSubject"] == ["Objects|AC/DC", "Objects|Rock\u00a6Pop"]
    # Without a TagsList digiKam would read lr:hierarchicalSubject's "AC/DC" as two levels: one is written.
    assert xmp["Xmp.digiKam.TagsList"] == ["Objects/AC\u2215DC", "Objects/Rock\u00a6Pop"]
    shown = shown_by_each_tool(written.xmp)
    assert shown["darktable"] == shown["Lightroom"] == {("Objects", "AC/DC"), ("Objects", "Rock\u00a6Pop")}
    assert shown["digiKam"] == shown["Immich"] == {("Objects", "AC\u2215DC"), ("Objects", "Rock\u00a6Pop")}


def test_a_users_level_holding_a_slash_stays_one_level_in_tags_list(publish, make, watch_root: Path) -> None:
    sidecar = watch_root / "band.jpg.xmp"
    sidecar.write_text(LIGHTROOM_MUSIC, encoding="utf-8")
    written = publish("band.jpg", [], media=make.IMAGE)
    xmp = exiv2_read(written.xmp)
    assert xmp["Xmp.dc.subject"] == ["AC/DC", "Music"]  # theirs, and "Music" names a level: no keyword of its own
    assert xmp["Xmp.lr.hierarchicalSubject"] == ["Music|AC/DC"]
    assert xmp["Xmp.digiKam.TagsList"] == ["Music/AC\u2215DC"]
    shown = shown_by_each_tool(written.xmp)
    assert shown["darktable"] == shown["Lightroom"] == {("Music", "AC/DC")}
    assert shown["digiKam"] == shown["Immich"] == {("Music", "AC\u2215DC")}


def test_tags_list_is_written_when_asked_and_kept_where_it_exists(publish, make) -> None:
    jane = [make.segment("Jane Doe", media_type="image")]
    plain = publish("plain.jpg", jane, media=make.IMAGE)
    assert "Xmp.digiKam.TagsList" not in exiv2_read(plain.xmp)

    asked = publish("asked.jpg", jane, media=make.IMAGE, settings=SidecarSettings(digikam_tags_list=True))
    xmp = exiv2_read(asked.xmp)
    assert xmp["Xmp.digiKam.TagsList"] == ["People/Jane Doe"]
    assert xmp["Xmp.dvw.OwnedTagsList"] == ["People/Jane Doe"]

    # Switched off later: the sidecar has one now, so it stays in step rather than going stale.
    john = [make.segment("John Roe", media_type="image")]
    publish("asked.jpg", john, media=make.IMAGE, job_id="job-2")
    assert field_paths(exiv2_read(asked.xmp))["digiKam:TagsList"] == {("People", "John Roe")}


@pytest.mark.parametrize("damage", ["truncated", "malformed XMP"])
def test_a_damaged_image_costs_a_note_not_the_sidecar(publish, make, watch_root: Path, damage: str) -> None:
    data = (FIXTURES / "xmp-keywords.jpg").read_bytes()
    if damage == "truncated":
        data = data[:100]
    else:
        data = data.replace(b"<rdf:li>embedded-kw</rdf:li></rdf:Bag>", b"<rdf:li>embedded-kw</rdf:Bag>", 1)
    (watch_root / "broken.jpg").write_bytes(data)
    written = publish("broken.jpg", [make.segment("Jane Doe", media_type="image")], media=make.IMAGE)
    assert written.xmp is not None and written.xmp.exists()
    (note,) = written.notes
    assert note.startswith("could not read the keywords embedded in broken.jpg")
    assert field_paths(exiv2_read(written.xmp))["lr:hierarchicalSubject"] == {("People", "Jane Doe")}


def test_an_existing_sidecar_is_not_mixed_with_the_files_own_keywords(publish, make, watch_root: Path) -> None:
    """The file is read only when the sidecar is created: once there, the sidecar is where keywords live."""
    media = watch_root / "news.jpg"
    media.write_bytes((FIXTURES / "iptc-keywords.jpg").read_bytes())
    (watch_root / "news.jpg.xmp").write_text(LIGHTROOM_MUSIC, encoding="utf-8")
    written = publish("news.jpg", [], media=make.IMAGE)
    assert field_paths(exiv2_read(written.xmp))["lr:hierarchicalSubject"] == {("Music", "AC/DC")}


def test_reading_a_fifo_in_place_of_the_image_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    found: list[KeywordFields] = []
    reader = threading.Thread(target=lambda: found.append(read_embedded_keywords(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert not reader.is_alive(), "opening a FIFO blocked"
    assert found == [KeywordFields()]
