"""Regions: validation messages, reprojection, pixel-centre masks, tagging."""

from __future__ import annotations

import itertools

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS

from geoseg.change.regions import (
    EmptyRegionWarning,
    prepare_regions,
    region_masks,
    tag_with_regions,
    warn_empty_regions,
)
from geoseg.errors import InputError, VectorReadError
from geoseg.grid import PixelWindow, RasterGrid

# 10 x 10 pixels of 30 m: x 300000..300300, y 4149700..4150000
GRID = RasterGrid(CRS.from_epsg(32612), Affine(30.0, 0.0, 300000.0, 0.0, -30.0, 4150000.0), 10, 10)


def _frame(geometries: list[shapely.Geometry], **columns: list[object]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(columns, geometry=geometries, crs="EPSG:32612")


def test_ids_from_field_default_id_or_numbers() -> None:
    box = shapely.box(300000, 4149700, 300300, 4150000)
    named = prepare_regions(
        _frame([box, box], code=["a", "b"]), GRID, id_field="code", source="r.gpkg"
    )
    assert named.ids == ("a", "b")
    default = prepare_regions(_frame([box], id=[7]), GRID, id_field=None, source="r.gpkg")
    assert default.ids == (7,)
    numbered = prepare_regions(
        _frame([box, box], name=["x", "y"]), GRID, id_field=None, source="r.gpkg"
    )
    assert numbered.ids == (1, 2)


def test_missing_id_field_lists_the_fields() -> None:
    box = shapely.box(300000, 4149700, 300300, 4150000)
    with pytest.raises(VectorReadError, match=r"r\.gpkg.*'NAME'.*\['code', 'state'\]"):
        prepare_regions(
            _frame([box], code=[1], state=["x"]), GRID, id_field="NAME", source="r.gpkg"
        )


def test_repeated_or_missing_ids() -> None:
    box = shapely.box(300000, 4149700, 300300, 4150000)
    with pytest.raises(InputError, match="repeat"):
        prepare_regions(_frame([box, box], code=["a", "a"]), GRID, id_field="code", source="r")
    with pytest.raises(InputError, match="no 'code'"):
        prepare_regions(_frame([box, box], code=["a", None]), GRID, id_field="code", source="r")


def test_invalid_geometry_names_the_region_and_file() -> None:
    bowtie = shapely.Polygon(
        [(300000, 4150000), (300300, 4149700), (300300, 4150000), (300000, 4149700)]
    )
    good = shapely.box(300000, 4149700, 300300, 4150000)
    frame = _frame([good, bowtie], code=["ok", "bowtie"])
    with pytest.raises(
        InputError, match=r"regions\.gpkg: region 'bowtie'.*Self-intersection.*make_valid"
    ):
        prepare_regions(frame, GRID, id_field="code", source="regions.gpkg")


def test_no_overlap_and_no_crs() -> None:
    far = shapely.box(0, 0, 10, 10)
    with pytest.raises(InputError, match="no region overlaps"):
        prepare_regions(_frame([far], code=[1]), GRID, id_field="code", source="r")
    frame = gpd.GeoDataFrame({"code": [1]}, geometry=[far])
    with pytest.raises(InputError, match="no CRS"):
        prepare_regions(frame, GRID, id_field="code", source="r")


def test_regions_are_reprojected_to_the_grid_crs() -> None:
    box = shapely.box(300000, 4149700, 300300, 4150000)
    geographic = _frame([box], code=[1]).to_crs("EPSG:4326")
    regions = prepare_regions(geographic, GRID, id_field="code", source="r")
    assert regions.crs == GRID.crs
    assert regions.geometries[0].area == pytest.approx(box.area, rel=1e-6)


def test_masks_follow_the_pixel_centre_rule_and_may_overlap() -> None:
    # left ends 40% into column 3 (its centre is at 50%: out); right starts 40% into column 2
    # (its centre is in): column 2 belongs to both
    left = shapely.box(300000, 4149700, 300000 + 3.4 * 30, 4150000)
    right = shapely.box(300000 + 2.4 * 30, 4149700, 300300, 4150000)
    outside = shapely.box(400000, 4149700, 400300, 4150000)
    regions = prepare_regions(
        _frame([left, right, outside], code=[1, 2, 3]), GRID, id_field="code", source="r"
    )
    masks = dict(region_masks(regions, GRID, PixelWindow(2, 0, 4, 10)))
    assert set(masks) == {0, 1}
    assert masks[0].shape == (4, 10)
    assert masks[0][0].tolist() == [True] * 3 + [False] * 7
    assert masks[1][0].tolist() == [False] * 2 + [True] * 8
    # a window entirely left of region 2's pixels gives no mask for it
    assert set(dict(region_masks(regions, GRID, PixelWindow(0, 0, 10, 2)))) == {0}


def test_empty_regions_warn_and_all_empty_raise() -> None:
    with pytest.warns(EmptyRegionWarning, match=r"1 regions .*: b; their"):
        warn_empty_regions(("a", "b"), np.array([5, 0]), "r.gpkg")
    ids = [f"r{index}" for index in range(30)]
    with pytest.warns(EmptyRegionWarning) as caught:
        warn_empty_regions(ids, np.array([1] + [0] * 29), "r.gpkg")
    (message,) = (str(warning.message) for warning in caught)
    assert "29 regions" in message and "r1, r2," in message and "r10 and 19 more;" in message
    assert "r11" not in message
    with pytest.raises(InputError, match="no region holds"):
        warn_empty_regions(("a", "b"), np.array([0, 0]), "r.gpkg")


def test_tag_with_regions_skips_boundary_touches() -> None:
    west = shapely.box(300000, 4149700, 300150, 4150000)
    east = shapely.box(300150, 4149700, 300300, 4150000)
    regions = prepare_regions(
        _frame([west, east], code=["w", "e"]), GRID, id_field="code", source="r"
    )
    polygons = gpd.GeoDataFrame(
        geometry=[
            shapely.box(300000, 4149900, 300060, 4150000),  # inside west
            shapely.box(300120, 4149900, 300180, 4150000),  # straddles
            shapely.box(300090, 4149700, 300150, 4149760),  # touches east only along x=300150
            shapely.box(500000, 0, 500030, 30),  # outside
        ],
        crs="EPSG:32612",
    )
    assert tag_with_regions(polygons, regions) == ["w", "w,e", "w", ""]
    assert tag_with_regions(polygons.iloc[:0], regions) == []


@settings(max_examples=40, deadline=None)
@given(
    x_cuts=st.lists(st.integers(1, 19), min_size=1, max_size=3, unique=True),
    y_cuts=st.lists(st.integers(1, 19), min_size=1, max_size=3, unique=True),
    window_rows=st.integers(1, 10),
    window_cols=st.integers(1, 10),
)
def test_tiling_regions_count_every_pixel_once_in_any_window(
    x_cuts: list[int], y_cuts: list[int], window_rows: int, window_cols: int
) -> None:
    # cuts at multiples of half a pixel: on pixel edges and through pixel centres
    xs = [300000.0, *(300000.0 + 15.0 * cut for cut in sorted(x_cuts)), 300300.0]
    ys = [4149700.0, *(4149700.0 + 15.0 * cut for cut in sorted(y_cuts)), 4150000.0]
    boxes = [
        shapely.box(x0, y0, x1, y1)
        for x0, x1 in itertools.pairwise(xs)
        for y0, y1 in itertools.pairwise(ys)
    ]
    regions = prepare_regions(
        _frame(boxes, code=list(range(len(boxes)))), GRID, id_field="code", source="r"
    )
    whole = np.zeros((len(boxes), *GRID.shape), dtype=np.int64)
    for row in range(0, GRID.height, window_rows):
        for col in range(0, GRID.width, window_cols):
            window = PixelWindow(row, col, window_rows, window_cols).clip(*GRID.shape)
            rows, cols = window.slices()
            for index, mask in region_masks(regions, GRID, window):
                whole[index, rows, cols] += mask
    assert (whole.sum(axis=0) == 1).all()
    single = dict(region_masks(regions, GRID, GRID.full_window))
    for index in range(len(boxes)):
        assert np.array_equal(whole[index] > 0, single.get(index, np.zeros(GRID.shape, bool)))
