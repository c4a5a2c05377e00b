"""Reading several bands of a scene onto a target grid, one window at a time.

A pixel-aligned scene (same CRS and pixel size, origin a whole number of
pixels away) is read with a plain windowed read. Any other scene goes through
GDAL's warper (:class:`rasterio.vrt.WarpedVRT` over the *whole* target grid,
nearest resampling, exact coordinate transform), so a pixel's value never
depends on how the grid is cut into windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT

from geoseg.errors import RasterReadError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.io.warp import pixel_offset

# GDAL approximates the warp transform within 0.125 px by default; a tiny
# tolerance makes nearest sampling exact (rasterio takes exactly 0 as unset).
_EXACT_TRANSFORM = 1e-9


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
        The scene file.
    bands
        Band indexes to read, in the order wanted.
    nodata
        The scene's nodata value as the catalog records it (it may be missing
        from the file's own metadata); None to rely on the file's masks only.
    grid, window
        The target grid and the window of it to read; parts outside the scene
        come back invalid.

    Returns
    -------
    tuple
        ``(values (bands, rows, cols) in the file's dtype, valid (rows, cols))``.
    """
    indexes = list(bands)
    try:
        with rasterio.open(path) as dataset:
            source = RasterGrid(dataset.crs, dataset.transform, dataset.height, dataset.width)
            offset = pixel_offset(source, grid)
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
                return values, _valid(values, nodata, masks)
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
                src_nodata=nodata,
                nodata=nodata,
                add_alpha=nodata is None and dataset.nodata is None,
            ) as vrt:
                values[:, rows, cols] = vrt.read(indexes, window=inside.to_rasterio())
                masks[:, rows, cols] = vrt.read_masks(indexes, window=inside.to_rasterio())
    except RasterioIOError as error:
        raise RasterReadError(
            f"{path}: reading rows {window.row}-{window.row_stop}, cols {window.col}-"
            f"{window.col_stop} onto the target grid failed; the file may be truncated or "
            f"corrupt ({error})"
        ) from None
    return values, _valid(values, nodata, masks)
