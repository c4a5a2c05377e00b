"""Nearest-neighbour overviews of a chunked raster, computed chunk by chunk.

A Cloud-Optimized GeoTIFF carries reduced-resolution copies of its raster
(overviews) at factors 2, 4, 8, ... until the smallest fits one block. Building
them at the end, from the whole mosaic, is serial work while every worker
idles; here each output chunk computes its share of every level instead, in
parallel, and the final COG only copies them.

Overview pixel ``(I, J)`` at factor ``f`` is the scene pixel at
``(min(I * f + f // 2, height - 1), min(J * f + f // 2, width - 1))``: the pixel
nearest the centre of the ``f x f`` block it stands for (the last row and
column clamped to the scene). A chunk holds exactly the overview pixels whose
sample lies inside it, so the levels do not depend on the chunking, and class
labels stay class labels (no averaging). The grid of the level at factor ``f``
is :meth:`geoseg.grid.RasterGrid.zoom_out` ``(f)``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from geoseg.grid import PixelWindow, RasterGrid

OVERVIEW_BLOCK = 512
"""Levels are added until the smallest fits in one block of this size (GDAL's COG rule)."""


def overview_factors(height: int, width: int, block: int = OVERVIEW_BLOCK) -> tuple[int, ...]:
    """The overview factors of a ``height`` x ``width`` raster: 2, 4, ... as GDAL's COG driver."""
    factors = []
    factor, size = 1, max(height, width)
    while size > block:
        factor *= 2
        size = math.ceil(max(height, width) / factor)
        factors.append(factor)
    return tuple(factors)


def _samples(length: int, factor: int) -> NDArray[np.int64]:
    """Scene position sampled by each overview position along an axis."""
    positions = np.arange(math.ceil(length / factor), dtype=np.int64) * factor + factor // 2
    return np.minimum(positions, length - 1)


def overview_window(window: PixelWindow, grid: RasterGrid, factor: int) -> PixelWindow:
    """The overview pixels at ``factor`` whose samples lie in ``window`` (may be empty)."""
    rows = np.searchsorted(_samples(grid.height, factor), [window.row, window.row_stop])
    cols = np.searchsorted(_samples(grid.width, factor), [window.col, window.col_stop])
    return PixelWindow(int(rows[0]), int(cols[0]), int(rows[1] - rows[0]), int(cols[1] - cols[0]))


def decimate(
    data: NDArray[np.generic], window: PixelWindow, grid: RasterGrid, factor: int
) -> tuple[PixelWindow, NDArray[np.generic]]:
    """A chunk's share of the overview at ``factor``: its overview window and pixels.

    Parameters
    ----------
    data
        The chunk's pixels ``(bands, h, w)``.
    window
        Where the chunk lies in the scene.
    grid
        The scene grid.
    factor
        The overview factor.
    """
    level = overview_window(window, grid, factor)
    rows = _samples(grid.height, factor)[level.row : level.row_stop] - window.row
    cols = _samples(grid.width, factor)[level.col : level.col_stop] - window.col
    return level, data[:, rows][:, :, cols]
