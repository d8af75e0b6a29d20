"""Reading and writing the RDF/XML inside an XMP packet, with ElementTree and nothing cleverer.

Reading: RDF allows one resource's properties as child elements or as attributes, spread over several
``rdf:Description`` blocks (ExifTool writes one per namespace), with structures as ``rdf:parseType="Resource"`` or as
nested ``rdf:Description`` elements. :func:`read_properties` flattens all of that into one ordered list of property
elements, turning attribute properties into elements, so that the merge works on one shape.

Writing: our own small serializer instead of ``ElementTree.write``, because ElementTree can only keep readable namespace
prefixes through a process-wide registry (unsafe with worker threads) and would otherwise write ``ns0:``; and because
the packet needs the ``xpacket`` wrapper and escaping rules of its own.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from deepva_watch.sidecars.text import clean_text, xml_safe

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
X = "adobe:ns:meta/"
XML = "http://www.w3.org/XML/1998/namespace"
DC = "http://purl.org/dc/elements/1.1/"
LR = "http://ns.adobe.com/lightroom/1.0/"
IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
MWG_RS = "http://www.metadataworkinggroup.com/schemas/regions/"
ST_DIM = "http://ns.adobe.com/xap/1.0/sType/Dimensions#"
ST_AREA = "http://ns.adobe.com/xmp/sType/Area#"
XMP_DM = "http://ns.adobe.com/xmp/1.0/DynamicMedia/"
PHOTOSHOP = "http://ns.adobe.com/photoshop/1.0/"
DIGIKAM = "http://www.digikam.org/ns/1.0/"
# Our provenance namespace. Never change it: re-runs find what they wrote last time through it.
DVW = "https://deepva-watch.org/ns/1.0/"

PREFERRED_PREFIXES = {
    RDF: "rdf",
    X: "x",
    XML: "xml",
    DC: "dc",
    LR: "lr",
    IPTC_EXT: "Iptc4xmpExt",
    MWG_RS: "mwg-rs",
    ST_DIM: "stDim",
    ST_AREA: "stArea",
    XMP_DM: "xmpDM",
    PHOTOSHOP: "photoshop",
    DIGIKAM: "digiKam",
    DVW: "dvw",
    "http://ns.adobe.com/xap/1.0/": "xmp",
}

PACKET_ID = "W5M0MpCehiHzreSzNTczkc9d"


def q(namespace: str, local: str) -> str:
    """ElementTree's ``{uri}local`` name."""
    return f"{{{namespace}}}{local}"


RDF_DESCRIPTION = q(RDF, "Description")
RDF_LI = q(RDF, "li")
RDF_PARSE_TYPE = q(RDF, "parseType")
RDF_ABOUT = q(RDF, "about")
_RDF_CONTAINERS = {q(RDF, "Bag"), q(RDF, "Seq"), q(RDF, "Alt")}


class NotAnXmpPacket(ValueError):
    """The bytes are not XML, or XML without an ``rdf:RDF`` element."""


@dataclass
class ParsedPacket:
    properties: list[ET.Element]  # property elements of the described resource, in document order
    prefixes: dict[str, str] = field(default_factory=dict)  # namespace URI -> prefix the file used


def read_properties(data: bytes) -> ParsedPacket:
    prefixes: dict[str, str] = {}
    try:
        root = None
        for event, item in ET.iterparse(io.BytesIO(data), events=("start-ns", "start")):
            if event == "start-ns":
                prefix, uri = item
                if prefix and uri not in prefixes:
                    prefixes[uri] = prefix
            elif root is None:
                root = item
    except ET.ParseError as error:
        raise NotAnXmpPacket(str(error)) from error
    if root is None:
        raise NotAnXmpPacket("empty document")
    rdf_root = root if root.tag == q(RDF, "RDF") else root.find(f".//{q(RDF, 'RDF')}")
    if rdf_root is None:
        raise NotAnXmpPacket("no rdf:RDF element")
    properties: list[ET.Element] = []
    for description in rdf_root.findall(RDF_DESCRIPTION):
        # XMP wants rdf:about="" everywhere; old Adobe files wrote "uuid:…" for the same single resource.
        properties.extend(_description_properties(description))
    return ParsedPacket(properties=properties, prefixes=prefixes)


def _description_properties(description: ET.Element) -> Iterator[ET.Element]:
    for name, value in description.attrib.items():
        if name.startswith("{") and not name.startswith(f"{{{RDF}}}") and not name.startswith(f"{{{XML}}}"):
            element = ET.Element(name)
            element.text = value
            yield element
    yield from description


def struct_fields(prop: ET.Element) -> dict[str, ET.Element]:
    """The fields of a structure value in any of its RDF spellings, as elements keyed by ``{uri}local``."""
    fields: dict[str, ET.Element] = {}
    holders = [prop]
    if prop.get(RDF_PARSE_TYPE) != "Resource":
        holders = [prop, *prop.findall(RDF_DESCRIPTION)]
    for holder in holders:
        for name, value in holder.attrib.items():
            if name.startswith("{") and not name.startswith(f"{{{RDF}}}") and not name.startswith(f"{{{XML}}}"):
                element = ET.Element(name)
                element.text = value
                fields.setdefault(name, element)
        for child in holder:
            if child.tag != RDF_DESCRIPTION:
                fields.setdefault(child.tag, child)
    return fields


def array_items(prop: ET.Element) -> list[ET.Element]:
    """The ``rdf:li`` elements of an array property; a plain text value counts as an array of one."""
    container = next((child for child in prop if child.tag in _RDF_CONTAINERS), None)
    if container is not None:
        return list(container.findall(RDF_LI))
    if len(prop) == 0 and (prop.text or "").strip():
        return [prop]
    return []


def array_texts(prop: ET.Element) -> list[str]:
    return [(item.text or "").strip() for item in array_items(prop) if (item.text or "").strip()]


def text_of(element: ET.Element | None) -> str | None:
    if element is None:
        return None
    if len(element) == 0:
        return (element.text or "").strip()
    value = element.find(q(RDF, "value"))  # rdf:value with qualifiers
    return (value.text or "").strip() if value is not None else None


# --- building -------------------------------------------------------------------------------------------------------


def simple(tag: str, value: str, **attributes: str) -> ET.Element:
    element = ET.Element(tag, attributes)
    element.text = clean_text(value)
    return element


def array(tag: str, values: Iterable[str], container: str = "Bag") -> ET.Element:
    prop = ET.Element(tag)
    holder = ET.SubElement(prop, q(RDF, container))
    for value in values:
        ET.SubElement(holder, RDF_LI).text = clean_text(value)
    return prop


def resource(tag: str) -> ET.Element:
    """A structure written as ``rdf:parseType="Resource"`` (Adobe's and ExifTool's usual form)."""
    return ET.Element(tag, {RDF_PARSE_TYPE: "Resource"})


def resource_items(tag: str, items: Iterable[ET.Element], container: str = "Bag") -> ET.Element:
    prop = ET.Element(tag)
    holder = ET.SubElement(prop, q(RDF, container))
    holder.extend(items)
    return prop


# --- writing --------------------------------------------------------------------------------------------------------


def serialize_packet(properties: list[ET.Element], *, known_prefixes: dict[str, str], toolkit: str) -> bytes:
    """One ``rdf:Description rdf:about=""`` holding ``properties``, wrapped in an xpacket, as UTF-8 bytes."""
    namespaces = _NamespaceMap(known_prefixes)
    for prop in properties:
        for element in prop.iter():
            namespaces.note(element.tag)
            for name in element.attrib:
                namespaces.note(name)
    out = io.StringIO()
    out.write(f'<?xpacket begin="\ufeff" id="{PACKET_ID}"?>\n')
    out.write(f'<x:xmpmeta xmlns:x="{X}" x:xmptk="{_escape(clean_text(toolkit), attribute=True)}">\n')
    out.write(f' <rdf:RDF xmlns:rdf="{RDF}">\n')
    out.write('  <rdf:Description rdf:about=""')
    for uri, prefix in namespaces.declarations():
        out.write(f'\n    xmlns:{prefix}="{_escape(uri, attribute=True)}"')
    out.write(">\n")
    for prop in properties:
        _write_element(out, prop, namespaces, depth=3)
    out.write("  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n")
    out.write('<?xpacket end="w"?>\n')
    return out.getvalue().encode("utf-8")


class _NamespaceMap:
    """Prefixes for the namespaces a packet uses, and each tag's qualified name (a packet repeats a few dozen tags
    many times over, so each is worked out once)."""

    def __init__(self, known_prefixes: dict[str, str]) -> None:
        self._wanted = {**known_prefixes, **PREFERRED_PREFIXES}
        self._assigned: dict[str, str] = {RDF: "rdf", XML: "xml"}
        self._taken = {"rdf", "xml", "x"}
        self._qnames: dict[str, str] = {}

    def note(self, name: str) -> None:
        if name in self._qnames:
            return
        if not name.startswith("{"):
            self._qnames[name] = name
            return
        uri, local = name[1:].split("}", 1)
        if uri not in self._assigned:
            prefix = self._wanted.get(uri, "ns")
            if not _is_ncname(prefix) or prefix in self._taken:
                base = prefix if _is_ncname(prefix) else "ns"
                number = 1
                while f"{base}{number}" in self._taken:
                    number += 1
                prefix = f"{base}{number}"
            self._assigned[uri] = prefix
            self._taken.add(prefix)
        self._qnames[name] = f"{self._assigned[uri]}:{local}"

    def declarations(self) -> list[tuple[str, str]]:
        return [(uri, prefix) for uri, prefix in self._assigned.items() if uri not in (RDF, XML)]

    def qname(self, name: str) -> str:
        return self._qnames[name]


def _is_ncname(prefix: str) -> bool:
    return bool(prefix) and prefix.lower() != "xml" and (prefix[0].isalpha() or prefix[0] == "_") and all(
        ch.isalnum() or ch in "-_." for ch in prefix
    )


def _write_element(out: io.StringIO, element: ET.Element, namespaces: _NamespaceMap, depth: int) -> None:
    indent = " " * depth
    tag = namespaces.qname(element.tag)
    out.write(f"{indent}<{tag}")
    out.writelines(f' {namespaces.qname(name)}="{_escape(xml_safe(value), attribute=True)}"' for name, value in element.attrib.items())
    literal = element.get(RDF_PARSE_TYPE) == "Literal"
    children = list(element)
    text = element.text or ""
    if not children and not text:
        out.write("/>\n")
        return
    out.write(">")
    if literal:
        # XML literal content is significant to the last space: copy it exactly.
        out.write(_escape(xml_safe(text)))
        out.writelines(_literal(child, namespaces) for child in children)
        out.write(f"</{tag}>\n")
        return
    if not children:
        out.write(f"{_escape(xml_safe(text))}</{tag}>\n")
        return
    out.write("\n")
    if text.strip():  # mixed content is not valid RDF/XML; keep it rather than lose data
        out.write(f"{indent} {_escape(xml_safe(text))}\n")
    for child in children:
        _write_element(out, child, namespaces, depth + 1)
    out.write(f"{indent}</{tag}>\n")


def _literal(element: ET.Element, namespaces: _NamespaceMap) -> str:
    tag = namespaces.qname(element.tag)
    attributes = "".join(
        f' {namespaces.qname(name)}="{_escape(xml_safe(value), attribute=True)}"' for name, value in element.attrib.items()
    )
    inner = _escape(xml_safe(element.text or "")) + "".join(_literal(child, namespaces) for child in element)
    return f"<{tag}{attributes}>{inner}</{tag}>" + _escape(xml_safe(element.tail or ""))


#: Characters :func:`_escape` replaces; most values have none, and are returned as they are.
_SPECIAL_IN_TEXT = re.compile(r'[&<>"\r]')
_SPECIAL_IN_ATTRIBUTE = re.compile(r'[&<>"\r\t\n]')


def _escape(text: str, *, attribute: bool = False) -> str:
    if not (_SPECIAL_IN_ATTRIBUTE if attribute else _SPECIAL_IN_TEXT).search(text):
        return text
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    text = text.replace("\r", "&#xD;")  # a parser would turn a raw CR into LF
    if attribute:
        text = text.replace("\t", "&#x9;").replace("\n", "&#xA;")
    return text
