"""Class maps: presets, YAML validation, code ranges and the pure mapping function."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from geoseg.change.classmap import (
    ClassMap,
    apply_class_map,
    class_map_for_raster,
    class_names_from_tags,
    identity_class_map,
    load_class_map,
    parse_code_range,
    preset_class_map,
)
from geoseg.errors import ConfigError
from geoseg.labels import LABEL_NODATA


def test_prodes_preset_maps_years_and_excludes_clouds() -> None:
    codes = np.array([[1, 11, 16, 17], [27, 29, 33, 32]], dtype=np.uint8)
    ids = apply_class_map(codes, preset_class_map("prodes"))
    assert ids.tolist() == [[1, 11, 16, 17], [27, 29, 33, LABEL_NODATA]]
    names = {spec.id: spec.name for spec in preset_class_map("prodes").specs()}
    assert names[27] == "cleared 2019"
    forest = [spec.id for spec in preset_class_map("prodes").specs() if spec.is_forest]
    assert forest == [1]


def test_hansen_presets() -> None:
    loss = apply_class_map(np.array([0, 1, 23, 24, 255], np.uint8), load_class_map("hansen-loss"))
    assert loss.tolist() == [100, 101, 123, LABEL_NODATA, LABEL_NODATA]
    cover = apply_class_map(
        np.array([0, 30, 31, 100, 101], np.uint8), load_class_map("hansen-treecover30")
    )
    assert cover.tolist() == [0, 0, 1, 1, LABEL_NODATA]


def test_yaml_class_map_with_ranges(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text(
        "classes:\n"
        "  - {id: 0, name: low, codes: ['0..9', 20]}\n"
        "  - {id: 3, name: high, codes: ['10..19'], is_forest: true}\n"
    )
    class_map = load_class_map(path)
    codes = np.array([0, 9, 10, 19, 20, 21], dtype=np.uint16)
    assert apply_class_map(codes, class_map).tolist() == [0, 0, 3, 3, 0, LABEL_NODATA]
    # other integer types take the range path and give the same answer
    signed = np.array([-5, 0, 9, 10, 19, 20, 21], dtype=np.int32)
    expected = [LABEL_NODATA, 0, 0, 3, 3, 0, LABEL_NODATA]
    assert apply_class_map(signed, class_map).tolist() == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("classes:\n  - {id: 0, name: a, codes: [1], colour: red}\n", "colour"),
        (
            "classes:\n  - {id: 0, name: a, codes: ['1..5']}\n  - {id: 1, name: b, codes: [5]}\n",
            "code 5",
        ),
        ("classes:\n  - {id: 0, name: a, codes: ['5..1']}\n", "ends before"),
        ("classes:\n  - {id: 0, name: a, codes: ['one']}\n", "neither an integer"),
        ("classes:\n  - {id: 255, name: a, codes: [1]}\n", "id"),
        ("classes:\n  - {id: 1, name: a, codes: [1]}\n  - {id: 1, name: b, codes: [2]}\n", "twice"),
    ],
)
def test_invalid_class_maps_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_class_map(path)


def test_unknown_preset_or_missing_file_lists_presets() -> None:
    with pytest.raises(ConfigError, match="prodes"):
        load_class_map("no-such-map")


def test_valid_mask_excludes_pixels() -> None:
    codes = np.array([1, 1, 0], dtype=np.uint8)
    valid = np.array([True, False, True])
    ids = apply_class_map(codes, preset_class_map("forest"), valid)
    assert ids.tolist() == [1, LABEL_NODATA, 0]
    assert ids.dtype == np.uint8


def test_identity_from_predict_tags() -> None:
    tags = {"GEOSEG_CLASS_NAMES": '{"0": "water", "4": "forest", "255": "nodata"}'}
    names = class_names_from_tags(tags, "labels.tif")
    assert names == {0: "water", 4: "forest", 255: "nodata"}
    class_map = class_map_for_raster(None, tags, "labels.tif")
    assert [spec.name for spec in class_map.specs()] == ["water", "forest"]
    ids = apply_class_map(np.array([0, 4, 5, 255], np.uint8), class_map)
    assert ids.tolist() == [0, 4, LABEL_NODATA, LABEL_NODATA]
    assert identity_class_map({1: "a"}, forest_ids=[1]).classes[0].is_forest


def test_missing_or_bad_tags_name_the_fix() -> None:
    with pytest.raises(ConfigError, match="--class-map"):
        class_map_for_raster(None, {}, "ref.tif")
    with pytest.raises(ConfigError, match="GEOSEG_CLASS_NAMES"):
        class_names_from_tags({"GEOSEG_CLASS_NAMES": "[1, 2"}, "ref.tif")
    given = ClassMap.model_validate({"classes": [{"id": 2, "name": "x", "codes": [7]}]})
    assert class_map_for_raster(given, {}, "ref.tif") is given


def test_parse_code_range() -> None:
    assert parse_code_range(5) == (5, 5)
    assert parse_code_range(" 1 .. 23 ") == (1, 23)
    assert parse_code_range("-3") == (-3, -3)
