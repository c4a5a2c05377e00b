"""QGIS styles of class layers: categorized solid fills as QML documents.

Pure text: the GeoPackage writer (:mod:`geoseg.io.vector`) stores the
documents in the ``layer_styles`` table, which QGIS applies when the layer is
opened.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from xml.etree import ElementTree

from geoseg.labels import Colour, default_colour


@dataclass(frozen=True)
class StyleCategory:
    """One class of a categorized style: attribute value, legend label, fill colour."""

    value: int
    label: str
    colour: Colour


def categorized_style_qml(field: str, categories: Sequence[StyleCategory]) -> str:
    """A QGIS QML document: solid fills categorized by the integer ``field``."""
    root = ElementTree.Element("qgis", version="3.28.0", styleCategories="Symbology")
    renderer = ElementTree.SubElement(
        root,
        "renderer-v2",
        type="categorizedSymbol",
        attr=field,
        symbollevels="0",
        enableorderby="0",
        forceraster="0",
    )
    listed = ElementTree.SubElement(renderer, "categories")
    symbols = ElementTree.SubElement(renderer, "symbols")
    for index, category in enumerate(categories):
        ElementTree.SubElement(
            listed,
            "category",
            value=str(category.value),
            label=category.label,
            symbol=str(index),
            render="true",
            type="integer",
        )
        symbol = ElementTree.SubElement(
            symbols, "symbol", type="fill", name=str(index), alpha="1", clip_to_extent="1"
        )
        layer = ElementTree.SubElement(
            symbol, "layer", attrib={"class": "SimpleFill", "enabled": "1", "pass": "0"}
        )
        options = ElementTree.SubElement(layer, "Option", type="Map")
        red, green, blue = category.colour
        for name, value in (
            ("color", f"{red},{green},{blue},255"),
            ("style", "solid"),
            ("outline_color", f"{red // 2},{green // 2},{blue // 2},255"),
            ("outline_style", "solid"),
            ("outline_width", "0.1"),
            ("outline_width_unit", "MM"),
        ):
            ElementTree.SubElement(options, "Option", type="QString", name=name, value=value)
    body = ElementTree.tostring(root, encoding="unicode")
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + body


def class_style_qml(
    class_ids: Sequence[int],
    names: Mapping[int, str],
    colours: Mapping[int, Colour],
) -> str:
    """The QML style of a class layer: one category per class id, by ``class_id``.

    Classes without a name are labelled ``class N``; without a colour they get
    :func:`geoseg.labels.default_colour`.
    """
    categories = [
        StyleCategory(
            class_id,
            names.get(class_id, f"class {class_id}"),
            colours.get(class_id, default_colour(class_id)),
        )
        for class_id in sorted(class_ids)
    ]
    return categorized_style_qml("class_id", categories)
