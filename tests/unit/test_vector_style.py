"""QGIS styles: the categorized QML of class layers."""

from __future__ import annotations

from xml.etree import ElementTree

from geoseg.vector.style import StyleCategory, categorized_style_qml


def test_style_qml_is_a_categorized_renderer() -> None:
    text = categorized_style_qml(
        "class_id", [StyleCategory(1, "forest", (0, 100, 0)), StyleCategory(3, "water", (0, 0, 9))]
    )
    root = ElementTree.fromstring(text.split("\n", 1)[1])
    renderer = root.find("renderer-v2")
    assert renderer is not None
    assert renderer.get("type") == "categorizedSymbol"
    assert renderer.get("attr") == "class_id"
    values = [category.get("value") for category in renderer.iter("category")]
    colours = [
        option.get("value") for option in renderer.iter("Option") if option.get("name") == "color"
    ]
    assert values == ["1", "3"]
    assert colours == ["0,100,0,255", "0,0,9,255"]
