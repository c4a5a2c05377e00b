"""True ground areas of pixels and polygons, in every CRS.

A map plane is not the ground: in World Mercator at 16 deg N a square metre of
the map covers 0.92 m2 of ground, in Web Mercator at 60 deg N a quarter of one.
Ground areas here are areas on the WGS 84 ellipsoid, measured by carrying
shapes into a cylindrical equal-area projection of that ellipsoid
(:data:`EQUAL_AREA_CRS`, EPSG:6933), where planar area *is* ellipsoidal area.

* Pixels: the ground area of a pixel is the area of the parallelogram spanned
  by its two edges carried into the equal-area plane (the Jacobian of the
  projection change, by central differences, at the pixel's centre). It is
  evaluated on a lattice of nodes every :data:`AREA_LATTICE` pixels, anchored
  at the grid's first pixel, and interpolated bilinearly in between: the
  projection's scale varies smoothly, so the interpolation error is far below
  1e-6, and every pixel's area depends only on its global position, never on
  the window it is read in (statistics stay identical for any chunking).
* Polygons: densified along their edges (:data:`EDGE_STEP_PIXELS` pixels at
  most between vertices) and carried into the equal-area plane for the area;
  the perimeter is the sum of geodesic lengths of the densified edges.

This holds for projected and geographic CRSs alike, conformal or not (Web
Mercator is neither equal-area nor conformal on the ellipsoid, and PROJ's
scale factors for it are those of the sphere).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import shapely
from numpy.typing import NDArray
from pyproj import CRS as ProjCRS
from pyproj import Geod, Transformer

from geoseg.errors import InputError
from geoseg.grid import PixelWindow, RasterGrid

EQUAL_AREA_CRS = "EPSG:6933"
"""WGS 84 / NSIDC EASE-Grid 2.0 Global: cylindrical equal-area on the WGS 84 ellipsoid."""
AREA_LATTICE = 32
"""Pixels between the lattice nodes at which pixel areas are evaluated exactly."""
EDGE_STEP_PIXELS = 8
"""Longest polygon edge, in pixels, before it is carried into the equal-area plane."""
_WGS84 = Geod(ellps="WGS84")
_EQUAL_AREA_WIDTH = 2 * 17367530.445161376  # x extent of EPSG:6933: one turn of longitude


@cache
def _to_equal_area(crs_wkt: str) -> Transformer:
    return Transformer.from_crs(
        ProjCRS.from_wkt(crs_wkt), ProjCRS.from_user_input(EQUAL_AREA_CRS), always_xy=True
    )


@cache
def _to_lonlat(crs_wkt: str) -> Transformer:
    return Transformer.from_crs(ProjCRS.from_wkt(crs_wkt), "EPSG:4326", always_xy=True)


def _unwrapped(dx: NDArray[np.float64]) -> NDArray[np.float64]:
    """Differences of equal-area x across the antimeridian, brought back to the short way."""
    half = _EQUAL_AREA_WIDTH / 2
    return (dx + half) % _EQUAL_AREA_WIDTH - half


def _node_areas(
    grid: RasterGrid, rows: NDArray[np.float64], cols: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Ground area in m2 of a pixel centred at each ``(row, col)`` (pixel coordinates)."""
    transform = grid.transform
    row_grid, col_grid = np.meshgrid(rows, cols, indexing="ij")
    offsets = ((0.5, 0.0), (-0.5, 0.0), (0.0, 0.5), (0.0, -0.5))  # +col, -col, +row, -row
    points = []
    for dcol, drow in offsets:
        c = col_grid + dcol
        r = row_grid + drow
        x = transform.c + c * transform.a + r * transform.b
        y = transform.f + c * transform.d + r * transform.e
        points.append((x.ravel(), y.ravel()))
    xs = np.concatenate([p[0] for p in points])
    ys = np.concatenate([p[1] for p in points])
    ex, ey = _to_equal_area(grid.crs.to_wkt()).transform(xs, ys, errcheck=True)
    ex = np.asarray(ex, dtype=np.float64).reshape(4, -1)
    ey = np.asarray(ey, dtype=np.float64).reshape(4, -1)
    ux, uy = _unwrapped(ex[0] - ex[1]), ey[0] - ey[1]  # one column step
    vx, vy = _unwrapped(ex[2] - ex[3]), ey[2] - ey[3]  # one row step
    area = np.abs(ux * vy - uy * vx)
    if not np.all(np.isfinite(area)):
        raise InputError(
            f"pixel areas: the grid reaches outside the valid area of its CRS ({grid.crs}); "
            "reproject the raster"
        )
    result: NDArray[np.float64] = area.reshape(row_grid.shape)
    return result


def pixel_areas_m2(grid: RasterGrid, window: PixelWindow | None = None) -> NDArray[np.float64]:
    """Ground area in m2 of every pixel of ``window`` (default: the whole grid).

    Parameters
    ----------
    grid
        Any raster grid with a CRS (projected or geographic; rotation allowed).
    window
        The pixels to measure, in the grid's pixel coordinates.

    Returns
    -------
    numpy.ndarray
        ``float64`` array of shape ``window.shape``; each value depends only on
        the pixel's position in ``grid``.
    """
    window = window or grid.full_window
    step = AREA_LATTICE
    first_row, first_col = window.row // step, window.col // step
    last_row = (window.row_stop - 1) // step + 1
    last_col = (window.col_stop - 1) // step + 1
    node_rows = np.arange(first_row, last_row + 1, dtype=np.float64) * step + 0.5
    node_cols = np.arange(first_col, last_col + 1, dtype=np.float64) * step + 0.5
    nodes = _node_areas(grid, node_rows, node_cols)
    rows = np.arange(window.row, window.row_stop)
    cols = np.arange(window.col, window.col_stop)
    row_index, row_weight = rows // step - first_row, (rows % step) / step
    col_index, col_weight = cols // step - first_col, (cols % step) / step
    # interpolate along columns at each node row, then between node rows
    left, right = nodes[:, col_index], nodes[:, col_index + 1]
    along = left * (1.0 - col_weight) + right * col_weight
    upper, lower = along[row_index], along[row_index + 1]
    result: NDArray[np.float64] = upper * (1.0 - row_weight[:, None]) + lower * row_weight[:, None]
    return result


def pixel_size_m(grid: RasterGrid) -> float:
    """Side in metres of a square with the area of the grid's central pixel."""
    centre = PixelWindow(grid.height // 2, grid.width // 2, 1, 1)
    return float(np.sqrt(pixel_areas_m2(grid, centre)[0, 0]))


def _densified(geometries: NDArray[np.object_], grid: RasterGrid) -> NDArray[np.object_]:
    pixel_side = float(np.hypot(grid.transform.a, grid.transform.d))
    pixel_side = min(pixel_side, float(np.hypot(grid.transform.b, grid.transform.e)))
    return np.asarray(shapely.segmentize(geometries, pixel_side * EDGE_STEP_PIXELS), dtype=object)


def polygon_ground_areas_m2(
    geometries: NDArray[np.object_], grid: RasterGrid
) -> NDArray[np.float64]:
    """Ground area in m2 of polygons given in ``grid``'s CRS."""
    if len(geometries) == 0:
        return np.zeros(0, dtype=np.float64)
    transformer = _to_equal_area(grid.crs.to_wkt())

    def carry(points: NDArray[np.float64]) -> NDArray[np.float64]:
        x, y = transformer.transform(points[:, 0], points[:, 1], errcheck=True)
        return np.column_stack([x, y])

    moved = shapely.transform(_densified(geometries, grid), carry)
    return np.asarray(shapely.area(moved), dtype=np.float64)


def polygon_ground_perimeters_m(
    geometries: NDArray[np.object_], grid: RasterGrid
) -> NDArray[np.float64]:
    """Geodesic length in m of the boundaries (holes included) of polygons in ``grid``'s CRS."""
    if len(geometries) == 0:
        return np.zeros(0, dtype=np.float64)
    boundaries = shapely.boundary(_densified(geometries, grid))
    rings = shapely.get_parts(boundaries)
    ring_owner = np.repeat(np.arange(len(boundaries)), shapely.get_num_geometries(boundaries))
    coords, ring_of_point = shapely.get_coordinates(rings, return_index=True)
    lon, lat = _to_lonlat(grid.crs.to_wkt()).transform(coords[:, 0], coords[:, 1], errcheck=True)
    lon, lat = np.asarray(lon), np.asarray(lat)
    same_ring = ring_of_point[1:] == ring_of_point[:-1]
    _, _, lengths = _WGS84.inv(
        lon[:-1][same_ring], lat[:-1][same_ring], lon[1:][same_ring], lat[1:][same_ring]
    )
    per_ring = np.bincount(ring_of_point[1:][same_ring], weights=lengths, minlength=len(rings))
    return np.bincount(ring_owner, weights=per_ring, minlength=len(geometries)).astype(np.float64)
