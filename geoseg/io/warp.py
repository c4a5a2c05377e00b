"""Reading a raster onto another grid, one window at a time (nearest neighbour).

Two class maps on different grids or CRSs are compared on one *common grid*:
by default BEFORE's grid clipped to the overlap of both rasters
(:func:`common_grid`). :func:`read_on_grid` reads any window of that grid from
either raster, and :func:`read_bands_on_grid` (which it wraps) reads several bands
of a scene onto a mosaic grid: a plain windowed read when the raster is
pixel-aligned with the grid, otherwise a :class:`rasterio.vrt.WarpedVRT` over the
whole grid with nearest resampling and an exact coordinate transform, so each
pixel's value does not depend on how the grid is cut into windows. Rasters
without a nodata value get an alpha band in the VRT, so pixels outside them are
never taken for data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from geoseg.errors import GridMismatchError, RasterReadError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.io.raster import open_raster

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


def _valid(values: NDArray[Any], nodata: float | None, masks: NDArray[Any]) -> NDArray[np.bool_]:
    valid: NDArray[np.bool_] = np.all(masks > 0, axis=0)
    if nodata is not None:
        valid &= np.all(values != nodata, axis=0)
    return valid


def read_bands_on_grid(
    path: str | Path,
    bands: Sequence[int],
    nodata: float | None,
    grid: RasterGrid,
    window: PixelWindow,
) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """``bands`` (1-based) of ``path`` on ``window`` of ``grid``, and where all hold data.

    Parameters
    ----------
    path
        The raster file.
    bands
        Band indexes to read, in the order wanted.
    nodata
        The raster's nodata value when it is known from elsewhere (a catalog
        entry; it may be missing from the file's own metadata); None to use the
        file's own nodata and masks.
    grid, window
        The target grid and the window of it to read; parts outside the raster
        come back invalid (values there are ``nodata``, else 0).

    Returns
    -------
    tuple
        ``(values (bands, rows, cols) in the file's dtype, valid (rows, cols))``.
    """
    indexes = list(bands)
    try:
        with open_raster(path) as dataset:
            effective = nodata if nodata is not None else dataset.nodata
            offset = pixel_offset(_dataset_grid(dataset), grid)
            fill = nodata if nodata is not None else 0
            values = np.full((len(indexes), *window.shape), fill, dtype=dataset.dtypes[0])
            masks = np.zeros((len(indexes), *window.shape), dtype=np.uint8)
            if offset is not None:
                target = window.shift(*offset)
                inside = target.clip(dataset.height, dataset.width)
                if not inside.is_empty:
                    rows, cols = inside.shift(-target.row, -target.col).slices()
                    values[:, rows, cols] = dataset.read(indexes, window=inside.to_rasterio())
                    masks[:, rows, cols] = dataset.read_masks(indexes, window=inside.to_rasterio())
                return values, _valid(values, effective, masks)
            inside = window.clip(grid.height, grid.width)
            if inside.is_empty:
                return values, np.zeros(window.shape, dtype=bool)
            rows, cols = inside.shift(-window.row, -window.col).slices()
            with WarpedVRT(
                dataset,
                crs=grid.crs,
                transform=grid.transform,
                width=grid.width,
                height=grid.height,
                resampling=Resampling.nearest,
                tolerance=_EXACT_TRANSFORM,
                src_nodata=effective,
                nodata=effective,
                add_alpha=effective is None,
            ) as vrt:
                values[:, rows, cols] = vrt.read(indexes, window=inside.to_rasterio())
                masks[:, rows, cols] = vrt.read_masks(indexes, window=inside.to_rasterio())
    except RasterioIOError as error:
        raise RasterReadError(
            f"{path}: reading rows {window.row}-{window.row_stop}, cols {window.col}-"
            f"{window.col_stop} onto the target grid failed; the file may be truncated or "
            f"corrupt ({error})"
        ) from None
    return values, _valid(values, effective, masks)


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
    values, valid = read_bands_on_grid(path, [1], None, grid, window)
    return values[0], valid


def read_mask_on_grid(
    paths: Sequence[str | Path], grid: RasterGrid, window: PixelWindow
) -> NDArray[np.bool_]:
    """Pixels of ``window`` that any mask raster of ``paths`` marks (band 1 non-zero).

    Each mask is read onto ``grid`` by :func:`read_on_grid`; pixels outside a
    mask raster or at its nodata are not masked by it.
    """
    masked = np.zeros(window.shape, dtype=bool)
    for path in paths:
        values, seen = read_on_grid(path, grid, window)
        masked |= seen & (values != 0)
    return masked
