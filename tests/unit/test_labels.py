"""The class-raster contract: class-names tag, colours."""

from __future__ import annotations

import pytest

from geoseg.errors import InputError
from geoseg.labels import (
    LABEL_NODATA,
    MAX_CLASS_ID,
    colour_table,
    colours_of_table,
    default_colour,
    format_class_names,
    hex_colour,
    is_hex_colour,
    parse_class_names,
)


def test_class_names_tag_round_trips_in_id_order() -> None:
    text = format_class_names({5: "shrubland", 1: "water"})
    assert text == '{"1": "water", "5": "shrubland"}'
    assert parse_class_names(text, "labels.tif") == {1: "water", 5: "shrubland"}


@pytest.mark.parametrize("text", ["[1, 2", "[1, 2]", '{"one": "water"}'])
def test_a_bad_class_names_tag_names_the_raster_and_the_tag(text: str) -> None:
    with pytest.raises(InputError, match=r"labels\.tif: the GEOSEG_CLASS_NAMES tag"):
        parse_class_names(text, "labels.tif")


def test_colours() -> None:
    assert MAX_CLASS_ID < LABEL_NODATA
    assert is_hex_colour("#33A02c") and not is_hex_colour("33a02c")
    assert hex_colour("#33a02c") == (0x33, 0xA0, 0x2C)
    table = colour_table({0: (1, 2, 3), 7: (4, 5, 6)})
    assert table.shape == (256, 4)
    assert table[7].tolist() == [4, 5, 6, 255] and table[1].tolist() == [0, 0, 0, 0]
    assert colours_of_table({3: (9, 8, 7, 0)}) == {3: (9, 8, 7)}
    assert len({default_colour(class_id) for class_id in range(8)}) == 8
