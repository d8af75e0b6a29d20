"""Merging into sidecars that people and other tools already keep: theirs survives, ours is replaced, never doubled."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from deepva_watch.deepva.models import Box, SummaryItem

REGION_INFO = (
    "{AppliedToDimensions={W=4000,H=3000,Unit=pixel},"
    "RegionList=[{Name=Theirs,Type=Face,Area={X=0.5,Y=0.5,W=0.1,H=0.1,Unit=normalized}}]}"
)


def tags_of(path: Path, make) -> dict:
    ET.fromstring(path.read_bytes())
    return make.exiftool_json(path)


def test_merge_into_a_sidecar_written_by_exiftool(publish, make, watch_root: Path) -> None:
    sidecar = watch_root / "IMG_1.jpg.xmp"
    make.run_exiftool(
        "-q", "-XMP-dc:Subject=mine", "-XMP-dc:Subject=Jane Doe", "-XMP-xmp:Rating=4", "-XMP-dc:Title=T",
        "-XMP-photoshop:City=Berlin", f"-XMP-mwg-rs:RegionInfo={REGION_INFO}", str(sidecar),
    )
    sidecar.chmod(0o664)
    first = [
        make.segment("Jane Doe", media_type="image", box=Box(0.25, 0.275, 0.1, 0.15)),
        make.segment("microphone", module="object_scene_recognition", kind="object", media_type="image"),
    ]
    written = publish("IMG_1.jpg", first, media=make.IMAGE)
    assert written.xmp == sidecar
    assert sidecar.stat().st_mode & 0o777 == 0o664
    tags = tags_of(sidecar, make)
    assert tags["XMP-xmp:Rating"] == 4
    assert tags["XMP-dc:Title"] == "T"
    assert tags["XMP-photoshop:City"] == "Berlin"
    # "Jane Doe" was theirs before our first write: kept once, not recorded as ours.
    assert tags["XMP-dc:Subject"] == ["mine", "Jane Doe", "microphone"]
    assert tags["XMP-dvw:OwnedSubjects"] == ["microphone"]
    # Their flat "mine" joins the hierarchy as a top-level keyword; their "Jane Doe" is our People|Jane Doe's leaf.
    assert tags["XMP-lr:HierarchicalSubject"] == ["mine", "People|Jane Doe", "Objects|microphone"]
    assert "XMP-digiKam:TagsList" not in tags  # none there, none asked for
    names = [region["Name"] for region in tags["XMP-mwg-rs:RegionInfo"]["RegionList"]]
    assert names == ["Theirs", "Jane Doe"]

    # A person adds a keyword between runs; the second run finds other things.
    make.run_exiftool("-q", "-overwrite_original", "-XMP-dc:Subject+=added later", str(sidecar))
    second = [
        make.segment("John Roe", media_type="image", box=Box(0.6, 0.3, 0.2, 0.2)),
        make.segment("lectern", module="object_scene_recognition", kind="object", media_type="image"),
    ]
    publish("IMG_1.jpg", second, media=make.IMAGE, job_id="job-2")
    tags = tags_of(sidecar, make)
    assert tags["XMP-dc:Subject"] == ["mine", "Jane Doe", "added later", "John Roe", "lectern"]
    # "Jane Doe" is no longer ours in the hierarchy, so their flat keyword stands there on its own.
    assert tags["XMP-lr:HierarchicalSubject"] == ["mine", "Jane Doe", "added later", "People|John Roe",
                                                  "Objects|lectern"]
    assert tags["XMP-iptcExt:PersonInImage"] == ["John Roe"]
    names = [region["Name"] for region in tags["XMP-mwg-rs:RegionInfo"]["RegionList"]]
    assert names == ["Theirs", "John Roe"]
    assert tags["XMP-dvw:JobId"] == "job-2"
    assert tags["XMP-xmp:Rating"] == 4 and tags["XMP-dc:Title"] == "T"

    # The same results again change nothing.
    before = sidecar.read_bytes()
    publish("IMG_1.jpg", second, media=make.IMAGE, job_id="job-2")
    assert sidecar.read_bytes() == before


ATTRIBUTE_FORM = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
     xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" xmlns:xmpDM="http://ns.adobe.com/xmp/1.0/DynamicMedia/"
     xmp:Rating="3" photoshop:Headline="Attribute &amp; form" xmpDM:scene="12A"/>
 </rdf:RDF>
</x:xmpmeta>
"""


def test_merge_into_attribute_form(publish, make, watch_root: Path) -> None:
    sidecar = watch_root / "clip.xmp"
    sidecar.write_text(ATTRIBUTE_FORM, encoding="utf-8")
    written = publish("clip.mxf", [make.segment("Jane Doe", time_start=0, time_end=2)], media=make.VIDEO_25)
    assert written.xmp == sidecar  # unmarked, and clip.mxf is the only clip.* here: merged
    tags = tags_of(sidecar, make)
    assert tags["XMP-xmp:Rating"] == 3
    assert tags["XMP-photoshop:Headline"] == "Attribute & form"
    assert tags["XMP-xmpDM:Scene"] == "12A"
    assert tags["XMP-dc:Subject"] == ["Jane Doe"]
    assert tags["XMP-photoshop:SidecarForExtension"] == "MXF"


NESTED = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
   <dc:subject><rdf:Bag><rdf:li>archive</rdf:li></rdf:Bag></dc:subject>
   <dc:creator><rdf:Seq><rdf:li>Photographer</rdf:li></rdf:Seq></dc:creator>
  </rdf:Description>
  <rdf:Description rdf:about="" xmlns:Iptc4xmpCore="http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/">
   <Iptc4xmpCore:CreatorContactInfo>
    <rdf:Description Iptc4xmpCore:CiAdrCity="Hamburg">
     <Iptc4xmpCore:CiEmailWork>desk@example.org</Iptc4xmpCore:CiEmailWork>
    </rdf:Description>
   </Iptc4xmpCore:CreatorContactInfo>
  </rdf:Description>
  <rdf:Description rdf:about="" xmlns:acme="http://example.org/acme/1.0/" acme:Desk="Sports">
   <acme:Notes xml:lang="en">line 1&#xD;line 2 &lt;kept&gt;</acme:Notes>
  </rdf:Description>
  <rdf:Description rdf:about="" xmlns:xmpDM="http://ns.adobe.com/xmp/1.0/DynamicMedia/">
   <xmpDM:Tracks><rdf:Bag>
    <rdf:li rdf:parseType="Resource">
     <xmpDM:trackName>Editor</xmpDM:trackName><xmpDM:trackType>Comment</xmpDM:trackType>
     <xmpDM:frameRate>f25</xmpDM:frameRate>
     <xmpDM:markers><rdf:Seq><rdf:li rdf:parseType="Resource">
      <xmpDM:startTime>10</xmpDM:startTime><xmpDM:duration>5</xmpDM:duration><xmpDM:name>cut here</xmpDM:name>
     </rdf:li></rdf:Seq></xmpDM:markers>
    </rdf:li>
   </rdf:Bag></xmpDM:Tracks>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""


def test_merge_nested_descriptions_unknown_namespace_and_foreign_tracks(publish, make, watch_root: Path) -> None:
    sidecar = watch_root / "story.xmp"
    sidecar.write_text(NESTED, encoding="utf-8")
    before = make.exiftool_json(sidecar)
    first = [make.segment("Jane Doe", time_start=0, time_end=2), make.segment("Jane Doe", time_start=5, time_end=6)]
    publish("story.mov", first, media=make.VIDEO_25, items=[SummaryItem("face", "Jane Doe")])
    tags = tags_of(sidecar, make)
    for key in ("XMP-dc:Creator", "XMP-iptcCore:CreatorCity", "XMP-iptcCore:CreatorWorkEmail"):
        assert tags.get(key) == before.get(key)
    assert tags["XMP-iptcCore:CreatorContactInfo"] == before["XMP-iptcCore:CreatorContactInfo"]
    foreign = {key: value for key, value in tags.items() if key.startswith("XMP-acme")}
    assert foreign == {key: value for key, value in before.items() if key.startswith("XMP-acme")}
    assert foreign  # ExifTool does read the unknown namespace
    assert foreign["XMP-acme:Notes"] == "line 1\rline 2 <kept>"  # an escaped CR survives as a CR
    assert tags["XMP-dc:Subject"] == ["archive", "Jane Doe"]
    tracks = {track["TrackName"]: track for track in tags["XMP-xmpDM:Tracks"]}
    assert set(tracks) == {"Editor", "DeepVA"}
    assert [m["StartTime"] for m in tracks["DeepVA"]["Markers"]] == [0, 125]

    # Second run with other results: our track replaced, theirs untouched, no stale markers or keywords.
    publish("story.mov", [make.segment("John Roe", time_start=1, time_end=2)], media=make.VIDEO_25, job_id="job-2")
    tags = tags_of(sidecar, make)
    assert tags["XMP-dc:Subject"] == ["archive", "John Roe"]
    tracks = {track["TrackName"]: track for track in tags["XMP-xmpDM:Tracks"]}
    assert set(tracks) == {"Editor", "DeepVA"}
    assert tracks["Editor"]["Markers"] == [{"StartTime": 10, "Duration": 5, "Name": "cut here"}]
    assert [(m["StartTime"], m["Name"]) for m in tracks["DeepVA"]["Markers"]] == [(25, "Face: John Roe")]
    assert len(tags["XMP-xmpDM:Tracks"]) == 2

    # Third run with nothing found: our track goes, theirs stays.
    publish("story.mov", [], media=make.VIDEO_25, job_id="job-3")
    tags = tags_of(sidecar, make)
    assert [track["TrackName"] for track in tags["XMP-xmpDM:Tracks"]] == ["Editor"]
    assert tags["XMP-dc:Subject"] == ["archive"]


def test_their_duration_and_timecode_are_not_overwritten(publish, make, watch_root: Path) -> None:
    sidecar = watch_root / "cam.xmp"
    make.run_exiftool("-q", "-XMP-xmpDM:StartTimecodeTimeValue=09:59:50:00", "-XMP-xmpDM:StartTimecodeTimeFormat=25Timecode", str(sidecar))
    publish("cam.mxf", [], media=make.VIDEO_25)
    tags = tags_of(sidecar, make)
    assert tags["XMP-xmpDM:StartTimecode"]["TimeValue"] == "09:59:50:00"
    assert tags["XMP-xmpDM:Duration"]["Value"] == 1500  # absent before: ours
    publish("cam.mxf", [], media=make.VIDEO_25, job_id="job-2")
    tags = tags_of(sidecar, make)
    assert tags["XMP-xmpDM:StartTimecode"]["TimeValue"] == "09:59:50:00"
    assert tags["XMP-xmpDM:Duration"]["Value"] == 1500
    assert sidecar.read_text(encoding="utf-8").count("<xmpDM:duration ") == 1


def test_corrupt_sidecar_is_moved_aside_not_destroyed(publish, make, watch_root: Path) -> None:
    sidecar = watch_root / "broken.jpg.xmp"
    sidecar.write_bytes(b"<x:xmpmeta><rdf:RDF>unclosed & broken")
    written = publish("broken.jpg", [make.segment("Jane Doe", media_type="image")], media=make.IMAGE)
    assert written.xmp == sidecar
    aside = [path for path in watch_root.iterdir() if ".corrupt-" in path.name]
    assert len(aside) == 1 and aside[0].read_bytes() == b"<x:xmpmeta><rdf:RDF>unclosed & broken"
    assert any("moved it to" in note for note in written.notes)
    assert tags_of(sidecar, make)["XMP-dc:Subject"] == ["Jane Doe"]


EXAMPLE_WITH_REGION = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
 <rdf:Description rdf:about="" xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
   xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#">
  <mwg-rs:Regions rdf:parseType="Resource"><mwg-rs:RegionList><rdf:Bag>
   <rdf:li rdf:parseType="Resource"><mwg-rs:Name>Jane Doe</mwg-rs:Name><mwg-rs:Type>Face</mwg-rs:Type>
    <mwg-rs:Area stArea:x="0.3" stArea:y="0.35" stArea:w="0.1" stArea:h="0.15" stArea:unit="normalized"/></rdf:li>
  </rdf:Bag></mwg-rs:RegionList></mwg-rs:Regions>
 </rdf:Description></rdf:RDF></x:xmpmeta>"""


def test_a_region_that_was_already_there_is_not_doubled_nor_taken_over(publish, make, watch_root: Path) -> None:
    sidecar = watch_root / "pic.jpg.xmp"
    sidecar.write_text(EXAMPLE_WITH_REGION, encoding="utf-8")
    same = [make.segment("Jane Doe", media_type="image", box=Box(0.25, 0.275, 0.1, 0.15))]
    publish("pic.jpg", same, media=make.IMAGE)
    regions = tags_of(sidecar, make)["XMP-mwg-rs:RegionInfo"]
    assert [region["Name"] for region in regions["RegionList"]] == ["Jane Doe"]
    publish("pic.jpg", [], media=make.IMAGE, job_id="job-2")  # nothing found now: their region stays
    regions = tags_of(sidecar, make)["XMP-mwg-rs:RegionInfo"]
    assert [region["Name"] for region in regions["RegionList"]] == ["Jane Doe"]
