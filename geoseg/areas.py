"""True ground areas of pixels.

Projected grids use the planimetric area of a pixel in metres (the CRS's linear
unit converted to metres). Geographic grids (degrees) use the geodesic area of
each pixel on the CRS's ellipsoid; on a north-up grid it depends only on the
row, so areas are returned per row.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pyproj import CRS as ProjCRS
from pyproj import Geod

from geoseg.errors import InputError
from geoseg.grid import PixelWindow, RasterGrid


def _linear_unit_to_metres(crs: ProjCRS) -> float:
    for axis in crs.axis_info:
        if axis.unit_conversion_factor:
            return float(axis.unit_conversion_factor)
    return 1.0


def row_pixel_areas_m2(grid: RasterGrid, rows: PixelWindow | None = None) -> NDArray[np.float64]:
    """Ground area in m2 of one pixel of each row of ``grid``.

    Parameters
    ----------
    grid
        A north-up raster grid.
    rows
        Restrict to the rows of this window (its columns are ignored).

    Returns
    -------
    numpy.ndarray
        ``float64`` array of one area per row.
    """
    if not grid.is_north_up:
        raise InputError("pixel areas need a north-up grid; warp the raster to a north-up grid")
    start, stop = (0, grid.height) if rows is None else (rows.row, rows.row_stop)
    crs = ProjCRS.from_user_input(grid.crs.to_wkt())
    transform = grid.transform
    if not crs.is_geographic:
        factor = _linear_unit_to_metres(crs)
        area = abs(transform.a * transform.e) * factor * factor
        return np.full(stop - start, area, dtype=np.float64)
    semi_major, semi_minor = _ellipsoid_axes(crs)
    geod = Geod(a=semi_major, b=semi_minor)
    edges = transform.f + transform.e * np.arange(start, stop + 1, dtype=np.float64)
    lon0 = transform.c
    lon1 = transform.c + transform.a
    areas = np.empty(stop - start, dtype=np.float64)
    for index in range(stop - start):
        lat_a, lat_b = edges[index], edges[index + 1]
        area, _ = geod.polygon_area_perimeter(
            [lon0, lon1, lon1, lon0], [lat_a, lat_a, lat_b, lat_b]
        )
        areas[index] = abs(area)
    return areas


def _ellipsoid_axes(crs: ProjCRS) -> tuple[float, float]:
    ellipsoid = crs.ellipsoid
    if ellipsoid is None:  # fall back to WGS 84
        return (6378137.0, 6356752.314245179)
    return (float(ellipsoid.semi_major_metre), float(ellipsoid.semi_minor_metre))


def pixel_areas_m2(grid: RasterGrid, window: PixelWindow | None = None) -> NDArray[np.float64]:
    """Ground area in m2 of every pixel of ``window`` (default: the whole grid).

    Returns
    -------
    numpy.ndarray
        ``float64`` array of shape ``window.shape``.
    """
    window = window or grid.full_window
    per_row = row_pixel_areas_m2(grid, window)
    return np.broadcast_to(per_row[:, None], window.shape).copy()
