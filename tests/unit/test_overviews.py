"""Overviews computed chunk by chunk equal the overview of the whole raster."""

from __future__ import annotations

import math

import numpy as np
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS

from geoseg.grid import PixelWindow, RasterGrid
from geoseg.predict.overviews import decimate, overview_factors, overview_window


def grid_of(height: int, width: int) -> RasterGrid:
    return RasterGrid(CRS.from_epsg(32612), Affine(30.0, 0, 0, 0, -30.0, 0), height, width)


def test_factors_follow_gdal_cog_rule() -> None:
    assert overview_factors(8192, 8192) == (2, 4, 8, 16)
    assert overview_factors(512, 300) == ()
    assert overview_factors(513, 10) == (2,)
    assert overview_factors(1428, 1128) == (2, 4)


def test_overview_pixel_samples_the_centre_of_its_block() -> None:
    grid = grid_of(10, 7)
    data = np.arange(70, dtype=np.int64).reshape(1, 10, 7)
    level, pixels = decimate(data, PixelWindow(0, 0, 10, 7), grid, 4)
    assert level == PixelWindow(0, 0, 3, 2)
    # rows 2, 6 and the last row 9 (clamped); columns 2 and the last column 6
    np.testing.assert_array_equal(pixels[0], data[0][np.ix_([2, 6, 9], [2, 6])])
    assert grid.zoom_out(4).shape == (3, 2)
    assert grid.zoom_out(4).transform == Affine(120.0, 0, 0, 0, -120.0, 0)


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    chunk=st.integers(4, 120),
    factor=st.sampled_from([2, 4, 8, 16, 32]),
)
def test_chunk_shares_tile_the_whole_overview(
    height: int, width: int, chunk: int, factor: int
) -> None:
    grid = grid_of(height, width)
    data = np.random.default_rng(height * width).integers(0, 255, (2, height, width), np.uint8)
    _, whole = decimate(data, PixelWindow(0, 0, height, width), grid, factor)
    assert whole.shape[1:] == (math.ceil(height / factor), math.ceil(width / factor))
    seen = np.zeros(whole.shape[1:], dtype=np.int64)
    stitched = np.zeros_like(whole)
    for window in grid.chunks(chunk):
        level, pixels = decimate(data[(slice(None), *window.slices())], window, grid, factor)
        assert level == overview_window(window, grid, factor)
        seen[level.slices()] += 1
        stitched[(slice(None), *level.slices())] = pixels
    assert (seen == 1).all()
    assert np.array_equal(stitched, whole)
