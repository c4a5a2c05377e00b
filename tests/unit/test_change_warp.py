"""Reading rasters onto a common grid: overlap, aligned and warped windows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import reproject, transform_bounds

from geoseg.errors import GridMismatchError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.io.warp import common_grid, pixel_offset, read_on_grid
from tests.conftest import coordinate_image

UTM = CRS.from_epsg(32612)


def _grid(
    x: float, y: float, height: int, width: int, size: float = 30.0, crs: CRS = UTM
) -> RasterGrid:
    return RasterGrid(crs, Affine(size, 0, x, 0, -size, y), height, width)


def test_common_grid_is_before_clipped_to_the_overlap() -> None:
    before = _grid(300000, 4150000, 100, 100)
    after = _grid(300000 + 40 * 30 + 10, 4150000 - 20 * 30, 200, 200, size=20)
    grid = common_grid(before, after, before_name="b.tif", after_name="a.tif")
    assert grid.crs == before.crs and grid.resolution == before.resolution
    assert pixel_offset(before, grid) == (20, 40)
    assert grid.shape == (80, 60)
    assert common_grid(before, before, before_name="b", after_name="b") == before


def test_rasters_without_overlap_raise() -> None:
    with pytest.raises(GridMismatchError, match=r"b\.tif and a\.tif do not overlap"):
        common_grid(
            _grid(300000, 4150000, 10, 10),
            _grid(500000, 4150000, 10, 10),
            before_name="b.tif",
            after_name="a.tif",
        )


def test_aligned_read_with_offset_nodata_and_outside(make_geotiff: Callable[..., Path]) -> None:
    data = (coordinate_image(1, 20, 30)[0] % 200).astype(np.uint8)
    data[0, 5] = 255
    path = make_geotiff(data, nodata=255, transform=Affine(30, 0, 300000, 0, -30, 4150000))
    grid = _grid(300000 + 3 * 30, 4150000 - 2 * 30, 18, 27)
    values, valid = read_on_grid(path, grid, PixelWindow(-2, 20, 6, 10))
    assert values.shape == valid.shape == (6, 10)
    # rows -2..3 and cols 20..29 of the grid are rows 0..5 and cols 23..32 of the file
    assert np.array_equal(values[:, :7], data[0:6, 23:30])
    assert not valid[:, 7:].any()
    expected_valid = data[0:6, 23:30] != 255
    assert np.array_equal(valid[:, :7], expected_valid)


def test_warped_reads_do_not_depend_on_the_window(make_geotiff: Callable[..., Path]) -> None:
    data = (coordinate_image(1, 40, 50)[0] % 250).astype(np.uint8)
    path = make_geotiff(data, transform=Affine(30, 0, 300000, 0, -30, 4150000))  # no nodata
    # target: UTM zone 13 (another CRS), 25 m pixels, extending past the source
    target_crs = CRS.from_epsg(32613)
    with rasterio.open(path) as dataset:
        left, bottom, right, top = transform_bounds(dataset.crs, target_crs, *dataset.bounds)
    grid = _grid(
        left - 100,
        top + 100,
        int((top - bottom) / 25) + 8,
        int((right - left) / 25) + 8,
        size=25,
        crs=target_crs,
    )
    whole, whole_valid = read_on_grid(path, grid, grid.full_window)
    assert whole_valid.any() and not whole_valid.all()  # outside the source is not valid
    for row in range(0, grid.height, 7):
        for col in range(0, grid.width, 11):
            window = PixelWindow(row, col, 7, 11)
            values, valid = read_on_grid(path, grid, window)
            rows, cols = window.clip(grid.height, grid.width).slices()
            height, width = rows.stop - rows.start, cols.stop - cols.start
            assert np.array_equal(valid[:height, :width], whole_valid[rows, cols])
            assert np.array_equal(
                np.where(valid, values, 0)[:height, :width],
                np.where(whole_valid, whole, 0)[rows, cols],
            )
    # and the whole read equals GDAL's nearest reprojection where both have data
    expected = np.zeros(grid.shape, np.uint8)
    reproject(
        data,
        expected,
        src_transform=Affine(30, 0, 300000, 0, -30, 4150000),
        src_crs=UTM,
        dst_transform=grid.transform,
        dst_crs=target_crs,
        tolerance=0,
    )
    inner = whole_valid & (expected > 0)
    assert np.mean(whole[inner] == expected[inner]) > 0.99
