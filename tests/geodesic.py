"""Independent geodesic reference areas for the tests (never through :mod:`geoseg.areas`).

Shapes are cut into short straight pieces in their own CRS, carried to lon/lat
with pyproj and measured with ``Geod.polygon_area_perimeter`` on WGS 84.
"""

from __future__ import annotations

import itertools

import numpy as np
import shapely
from affine import Affine
from numpy.typing import NDArray
from pyproj import Geod, Transformer

GEOD = Geod(ellps="WGS84")


def geodesic_area_m2(polygon: shapely.Polygon, crs: str, step: float) -> float:
    """Geodesic area of ``polygon`` (in ``crs``), its edges cut every ``step`` CRS units."""
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    total = 0.0
    for ring_index, ring in enumerate([polygon.exterior, *polygon.interiors]):
        coords = np.asarray(ring.coords)
        points = []
        for start, stop in itertools.pairwise(coords):
            pieces = max(1, int(np.ceil(np.hypot(*(stop - start)) / step)))
            fractions = np.arange(pieces)[:, None] / pieces
            points.append(start + fractions * (stop - start))
        xy = np.concatenate(points)
        lon, lat = to_lonlat.transform(xy[:, 0], xy[:, 1])
        area, _ = GEOD.polygon_area_perimeter(lon, lat)
        total += abs(area) if ring_index == 0 else -abs(area)
    return total


def row_areas_m2(transform: Affine, crs: str, height: int) -> NDArray[np.float64]:
    """Geodesic area of the first pixel of each row (north-up cylindrical grids: the whole row)."""
    return np.array(
        [
            geodesic_area_m2(
                shapely.box(
                    transform.c,
                    transform.f + transform.e * (row + 1),
                    transform.c + transform.a,
                    transform.f + transform.e * row,
                ),
                crs,
                abs(transform.a) / 4,
            )
            for row in range(height)
        ]
    )
