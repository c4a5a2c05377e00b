"""Reading a raster onto another grid, one window at a time (nearest neighbour).

Two class maps on different grids or CRSs are compared on one *common grid*:
by default BEFORE's grid clipped to the overlap of both rasters
(:func:`common_grid`). :func:`read_on_grid` reads any window of that grid from
either raster: a plain windowed read when the raster is pixel-aligned with the
grid, otherwise a :class:`rasterio.vrt.WarpedVRT` with nearest resampling and an
exact (tolerance 0) coordinate transform, so each pixel's value does not depend
on how the grid is cut into windows. Rasters without a nodata value get an alpha
band in the VRT, so pixels outside them are never taken for data.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from geoseg.errors import GridMismatchError, RasterReadError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.io.raster import read_valid_mask, read_window

_ALIGN_TOLERANCE = 1e-6  # in pixels
# GDAL's warper approximates the coordinate transform within 0.125 px by default,
# which makes nearest sampling depend on the window; a tiny tolerance makes it exact
# (rasterio treats exactly 0 as "unset").
_EXACT_TRANSFORM = 1e-9


def pixel_offset(source: RasterGrid, target: RasterGrid) -> tuple[int, int] | None:
    """``(row, col)`` of ``target``'s origin on ``source`` when the grids are aligned.

    Aligned means same CRS, same pixel size and origins a whole number of pixels
    apart; None otherwise.
    """
    if source.crs != target.crs:
        return None
    if not (
        math.isclose(source.transform.a, target.transform.a, rel_tol=1e-9)
        and math.isclose(source.transform.e, target.transform.e, rel_tol=1e-9)
    ):
        return None
    col = (target.transform.c - source.transform.c) / source.transform.a
    row = (target.transform.f - source.transform.f) / source.transform.e
    if abs(col - round(col)) > _ALIGN_TOLERANCE or abs(row - round(row)) > _ALIGN_TOLERANCE:
        return None
    return (round(row), round(col))


def common_grid(
    before: RasterGrid, after: RasterGrid, *, before_name: str, after_name: str
) -> RasterGrid:
    """BEFORE's grid clipped to the part that overlaps AFTER.

    Every BEFORE pixel that touches AFTER's footprint (transformed into
    BEFORE's CRS) is kept; AFTER's coverage is checked per pixel when read.

    Raises
    ------
    GridMismatchError
        When the two rasters do not overlap.
    """
    left, bottom, right, top = transform_bounds(
        after.crs, before.crs, *after.bounds, densify_pts=21
    )
    inverse = ~before.transform
    corners = [inverse @ (x, y) for x in (left, right) for y in (bottom, top)]
    cols = [col for col, _ in corners]
    rows = [row for _, row in corners]
    first_row = max(0, math.floor(min(rows) + _ALIGN_TOLERANCE))
    first_col = max(0, math.floor(min(cols) + _ALIGN_TOLERANCE))
    last_row = min(before.height, math.ceil(max(rows) - _ALIGN_TOLERANCE))
    last_col = min(before.width, math.ceil(max(cols) - _ALIGN_TOLERANCE))
    if last_row <= first_row or last_col <= first_col:
        raise GridMismatchError(
            f"{before_name} and {after_name} do not overlap ({before_name} covers "
            f"{before.bounds} in {before.crs}, {after_name} covers {after.bounds} in "
            f"{after.crs}); pick two rasters of the same area"
        )
    window = PixelWindow(first_row, first_col, last_row - first_row, last_col - first_col)
    return before.subgrid(window)


def _dataset_grid(dataset: Any) -> RasterGrid:
    return RasterGrid(dataset.crs, dataset.transform, dataset.height, dataset.width)


def read_on_grid(
    path: str | Path, grid: RasterGrid, window: PixelWindow
) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """Band 1 of ``path`` on ``window`` of ``grid`` (nearest), and where it holds data.

    Returns
    -------
    tuple
        ``(values, valid)``, both of ``window.shape``; pixels outside the raster
        or at its nodata are not valid.
    """
    try:
        with rasterio.open(path) as dataset:
            source = _dataset_grid(dataset)
            offset = pixel_offset(source, grid)
            if offset is None:
                return _read_warped(dataset, grid, window)
    except RasterioIOError as error:
        raise RasterReadError(f"{path}: not a readable raster ({error})") from None
    shifted = window.shift(*offset)
    values = read_window(path, shifted, bands=[1], fill_value=0)[0]
    return values, read_valid_mask(path, shifted)


def _read_warped(
    dataset: Any, grid: RasterGrid, window: PixelWindow
) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    try:
        with WarpedVRT(
            dataset,
            crs=grid.crs,
            transform=grid.transform,
            width=grid.width,
            height=grid.height,
            resampling=Resampling.nearest,
            tolerance=_EXACT_TRANSFORM,
            add_alpha=dataset.nodata is None,
        ) as vrt:
            values = np.zeros(window.shape, dtype=vrt.dtypes[0])
            valid = np.zeros(window.shape, dtype=bool)
            inside = window.clip(grid.height, grid.width)
            if inside.is_empty:
                return values, valid
            rows, cols = inside.shift(-window.row, -window.col).slices()
            values[rows, cols] = vrt.read(1, window=inside.to_rasterio())
            valid[rows, cols] = vrt.read_masks(1, window=inside.to_rasterio()) > 0
    except RasterioIOError as error:
        raise RasterReadError(
            f"{dataset.name}: warping rows {window.row}-{window.row_stop}, cols "
            f"{window.col}-{window.col_stop} onto the common grid failed ({error})"
        ) from None
    return values, valid
