"""How a DeepVA label is filed: one table from module and item type to keyword hierarchy and marker name.

DeepVA's summary items carry a ``type`` and sometimes a ``module``; detailed results carry a ``module`` and a ``kind``.
The module is the more precise of the two (``face_attributes`` reports on faces but its labels are not people), so it
wins when we know it; the type decides otherwise; anything else is filed under ``DeepVA|<module>`` so that new
modules need no code change.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabelKind:
    hierarchy: tuple[str, ...]  # the levels above the label: ("People",) files "Jane Doe" as People|Jane Doe
    marker_prefix: str  # "Face" in the marker name "Face: Jane Doe"
    is_person: bool = False


PEOPLE = LabelKind(("People",), "Face", is_person=True)
OBJECTS = LabelKind(("Objects",), "Object")
LANDMARKS = LabelKind(("Landmarks",), "Landmark")
TEXT = LabelKind(("Text",), "Text")
LOWER_THIRDS = LabelKind(("Lower thirds",), "Lower third")

_BY_MODULE: dict[str, LabelKind | None] = {
    "face_recognition": PEOPLE,
    "object_scene_recognition": OBJECTS,
    "landmark_recognition": LANDMARKS,
    "text_recognition": TEXT,
    "lower_third_recognition": LOWER_THIRDS,
    "face_attributes": None,  # reports on faces, but "female" or "30-39" is not a person
}
_BY_TYPE: dict[str, LabelKind] = {
    "face": PEOPLE,
    "person": PEOPLE,
    "object": OBJECTS,
    "scene": OBJECTS,
    "landmark": LANDMARKS,
    "text": TEXT,
    "ocr": TEXT,
    "lower_third": LOWER_THIRDS,
}

# Placeholders DeepVA uses for faces it found but could not name; they are not people to list in PersonInImage.
_UNNAMED_PERSON_PREFIXES = ("unknown", "unbekannt")


def classify(item_type: str | None, module: str | None) -> LabelKind:
    module_key = (module or "").strip().lower()
    if module_key in _BY_MODULE:
        known = _BY_MODULE[module_key]
        if known is not None:
            return known
    elif (found := _BY_TYPE.get((item_type or "").strip().lower())) is not None:
        return found
    name = module_key or (item_type or "").strip().lower() or "other"
    return LabelKind(("DeepVA", name), name)


def is_named_person(kind: LabelKind, label: str) -> bool:
    text = label.strip().casefold()
    return kind.is_person and bool(text) and not text.startswith(_UNNAMED_PERSON_PREFIXES)
