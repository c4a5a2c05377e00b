"""Map furniture of the report: a scale bar in ground distance, and masked areas as polygons.

A map's CRS can stretch distances (Web Mercator by ``1 / cos(latitude)``), so
the scale bar measures the ground along the map's middle row with geodesics
on the CRS's own ellipsoid, not in map units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import rasterio.features
from numpy.typing import NDArray
from pyproj import CRS, Geod, Transformer
from shapely.geometry import shape

from geoseg.grid import RasterGrid

_ROW_SEGMENTS = 64
"""Geodesic segments along the middle row (short enough that each is straight on the ground)."""


@dataclass(frozen=True, slots=True)
class ScaleBar:
    """A scale bar: its ground length and its length in the picture's pixels."""

    length_m: float
    pixels: float

    @property
    def label(self) -> str:
        """``500 m``, ``2 km``, ``1.5 km``..."""
        if self.length_m >= 1000:
            return f"{self.length_m / 1000:g} km"
        return f"{self.length_m:g} m"


def ground_width_m(bounds: tuple[float, float, float, float], crs: str) -> float:
    """Ground distance (m) along the middle row of a map with ``bounds`` in ``crs``."""
    minx, miny, maxx, maxy = bounds
    crs_object = CRS.from_user_input(crs)
    xs = np.linspace(minx, maxx, _ROW_SEGMENTS + 1)
    ys = np.full_like(xs, (miny + maxy) / 2)
    geographic = crs_object.geodetic_crs
    ellipsoid = None if geographic is None else geographic.ellipsoid
    if geographic is None or ellipsoid is None:
        raise ValueError(f"{crs}: no ellipsoid, so the map has no ground scale")
    if crs_object.is_geographic:
        lon, lat = xs, ys
    else:
        lon, lat = Transformer.from_crs(crs_object, geographic, always_xy=True).transform(xs, ys)
    geod = Geod(a=ellipsoid.semi_major_metre, rf=ellipsoid.inverse_flattening or 0.0)
    _, _, distances = geod.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
    return float(np.sum(distances))


def nice_length(limit_m: float) -> float:
    """The largest of 1, 2, 5 x 10^k metres not above ``limit_m``."""
    if not limit_m > 0 or not math.isfinite(limit_m):
        raise ValueError(f"a scale bar needs a positive ground length, got {limit_m}")
    magnitude = 10.0 ** math.floor(math.log10(limit_m))
    return max(step * magnitude for step in (1, 2, 5) if step * magnitude <= limit_m * (1 + 1e-12))


def scale_bar(
    bounds: tuple[float, float, float, float], crs: str, width_px: int, share: float = 0.25
) -> ScaleBar:
    """A scale bar of a round ground length about ``share`` of a ``width_px`` wide map."""
    metres_per_pixel = ground_width_m(bounds, crs) / width_px
    length = nice_length(share * width_px * metres_per_pixel)
    return ScaleBar(length, length / metres_per_pixel)


def unseen_mask(
    valid_before: NDArray[np.bool_], valid_after: NDArray[np.bool_]
) -> NDArray[np.bool_]:
    """Pixels without a valid class at either date (clouds, shadows, nodata, masks)."""
    unseen: NDArray[np.bool_] = ~(valid_before & valid_after)
    return unseen


def mask_polygons(mask: NDArray[np.bool_], grid: RasterGrid) -> gpd.GeoDataFrame:
    """The ``True`` pixels of ``mask`` (on ``grid``) as polygons in the grid's CRS."""
    geometries = [
        shape(geometry)
        for geometry, _ in rasterio.features.shapes(
            mask.astype(np.uint8), mask=mask, transform=grid.transform, connectivity=4
        )
    ]
    return gpd.GeoDataFrame(geometry=gpd.GeoSeries(geometries, crs=grid.crs), crs=grid.crs)
