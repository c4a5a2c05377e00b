from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geoseg.bbox import (
    LONLAT,
    BBox,
    BBoxClippedWarning,
    clip_to_coverage,
    make_bbox,
    overlapping,
    parse_bbox_text,
    split_antimeridian,
    to_crs,
    to_lonlat,
)
from geoseg.errors import BBoxError


def test_parse_bbox_text() -> None:
    assert parse_bbox_text(" -113.1, 37.15,-112.95 ,37.3") == (-113.1, 37.15, -112.95, 37.3)
    with pytest.raises(BBoxError, match="four numbers"):
        parse_bbox_text("1,2,3")
    with pytest.raises(BBoxError, match="must be a number"):
        parse_bbox_text("1,2,x,4")


@pytest.mark.parametrize(
    ("values", "crs", "message"),
    [
        ((0, 5, 1, 4), "EPSG:4326", "miny must be less than maxy"),
        ((5, 0, 4, 1), "EPSG:32612", "minx must be less than maxx"),
        ((math.nan, 0, 1, 1), "EPSG:4326", "finite"),
        ((0, 0, math.inf, 1), "EPSG:32612", "finite"),
        ((-190, 0, 1, 1), "EPSG:4326", "longitudes"),
        ((0, -91, 1, 1), "EPSG:4326", "latitudes"),
        ((0, 0, 1), "EPSG:4326", "four numbers"),
        ((0, 0, 1, 1), "EPSG:999999", "unknown CRS"),
    ],
)
def test_invalid_bboxes_are_rejected(values: tuple[float, ...], crs: str, message: str) -> None:
    with pytest.raises(BBoxError, match=message):
        make_bbox(values, crs)


def test_antimeridian_box_is_split_not_swapped() -> None:
    bbox = make_bbox((170, -10, -170, 10))
    assert bbox.crosses_antimeridian
    east, west = split_antimeridian(bbox)
    assert east.bounds == (170, -10, 180, 10)
    assert west.bounds == (-180, -10, -170, 10)
    # swapping would have given the 340-degree box from -170 to 170: not what was asked
    assert all(part.maxx - part.minx == 10 for part in (east, west))


@given(
    st.floats(0.5, 179.5),
    st.floats(-179.5, -0.5),
    st.floats(-80, 0),
    st.floats(1, 10),
)
def test_split_keeps_total_width(minx: float, maxx: float, miny: float, height: float) -> None:
    parts = split_antimeridian(make_bbox((minx, miny, maxx, miny + height)))
    width = sum(part.maxx - part.minx for part in parts)
    assert math.isclose(width, (180 - minx) + (maxx + 180))
    assert all(part.minx < part.maxx for part in parts)


def test_utm_box_on_the_antimeridian_becomes_two_lonlat_boxes() -> None:
    # UTM zone 60N around 180 degrees east: easting 700-900 km straddles the antimeridian
    bbox = make_bbox((700_000, 5_000_000, 900_000, 5_100_000), "EPSG:32660")
    parts = to_lonlat(bbox)
    assert len(parts) == 2
    assert parts[0].maxx == 180 and parts[1].minx == -180


def test_reprojection_is_densified() -> None:
    bbox = make_bbox((-113.10, 37.15, -112.95, 37.30))
    utm = to_crs(bbox, "EPSG:32612")
    # the lon/lat box's curved edges bulge past the corner points in UTM
    from pyproj import Transformer

    forward = Transformer.from_crs("EPSG:4326", "EPSG:32612", always_xy=True)
    corners = [forward.transform(x, y) for x in (-113.10, -112.95) for y in (37.15, 37.30)]
    assert utm.miny <= min(c[1] for c in corners) and utm.maxy >= max(c[1] for c in corners)
    assert utm.minx <= min(c[0] for c in corners) and utm.maxx >= max(c[0] for c in corners)
    back = to_lonlat(utm)[0]
    assert back.minx <= bbox.minx and back.maxx >= bbox.maxx


def test_clip_warns_when_partly_outside_and_errors_when_outside() -> None:
    coverage = make_bbox((0, 0, 10, 10), "EPSG:32612")
    inside = make_bbox((1, 1, 2, 2), "EPSG:32612")
    assert clip_to_coverage(inside, coverage) == inside
    with pytest.warns(BBoxClippedWarning, match="clipped"):
        clipped = clip_to_coverage(make_bbox((5, 5, 20, 20), "EPSG:32612"), coverage)
    assert clipped.bounds == (5, 5, 10, 10)
    with pytest.raises(BBoxError, match="outside"):
        clip_to_coverage(make_bbox((11, 11, 20, 20), "EPSG:32612"), coverage)


def test_overlapping_handles_split_parts() -> None:
    footprints = {
        "fiji": BBox(177, -19, 180, -16, LONLAT),
        "samoa": BBox(-173, -15, -171, -13, LONLAT),
        "zion": BBox(-113.2, 37.1, -112.8, 37.5, LONLAT),
    }
    parts = to_lonlat(make_bbox((175, -20, -170, -10)))
    assert overlapping(parts, footprints) == ["fiji", "samoa"]
