"""From merged pixel-space polygons to an attributed, georeferenced table.

Polygons arrive in global pixel coordinates (see :mod:`geoseg.vector.polygonize`).
Here they are simplified as a coverage (shared boundaries stay shared), moved
to the raster's CRS, measured on the ground and given their attributes; small
ones are dropped. Areas and perimeters are ground measures on the WGS 84
ellipsoid in every CRS (:mod:`geoseg.areas`), not map-plane measures.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray

from geoseg.areas import polygon_ground_areas_m2, polygon_ground_perimeters_m
from geoseg.errors import InputError
from geoseg.grid import RasterGrid
from geoseg.labels import MAX_CLASS_ID
from geoseg.vector.polygonize import GeometryArray, PolygonPieces

PROVENANCE_FIELDS = ("source", "model", "run_time")


def pixel_to_crs(geometries: GeometryArray, grid: RasterGrid) -> GeometryArray:
    """Move geometries from global pixel coordinates to the grid's CRS."""
    transform = grid.transform

    def apply(points: NDArray[np.float64]) -> NDArray[np.float64]:
        cols, rows = points[:, 0], points[:, 1]
        x = transform.c + cols * transform.a + rows * transform.b
        y = transform.f + cols * transform.d + rows * transform.e
        return np.column_stack([x, y])

    return shapely.transform(geometries, apply)  # type: ignore[no-any-return]


def _polygonal(geometry: object) -> object:
    """The polygonal part of a geometry that :func:`shapely.make_valid` returned."""
    if isinstance(geometry, shapely.Polygon | shapely.MultiPolygon):
        return geometry
    parts = [
        part
        for part in shapely.get_parts(geometry)
        if isinstance(part, shapely.Polygon | shapely.MultiPolygon)
    ]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def simplify_coverage(geometries: GeometryArray, tolerance: float) -> GeometryArray:
    """Simplify polygons that tile a map together, keeping shared edges shared.

    Uses GEOS coverage simplification: every boundary between two polygons is
    simplified once, so no gaps or overlaps appear; rings (holes included) are
    never collapsed. The coverage's outer boundary (raster edge, nodata) is kept
    exactly, so the simplified polygons still cover exactly the polygonized
    pixels. Any invalid result is repaired with ``make_valid``.

    Parameters
    ----------
    geometries
        Non-overlapping polygons with matching edges (a polygonized class map).
    tolerance
        Simplification tolerance in the geometries' units.
    """
    if tolerance <= 0 or len(geometries) == 0:
        return geometries
    simplified = shapely.coverage_simplify(geometries, tolerance, simplify_boundary=False)
    invalid = ~shapely.is_valid(simplified)
    if invalid.any():
        repaired = shapely.make_valid(simplified[invalid])
        simplified[invalid] = [_polygonal(geometry) for geometry in repaired]
    return np.asarray(simplified, dtype=object)


def ground_measures(
    geometries: GeometryArray, grid: RasterGrid
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Ground area (m2) and geodesic perimeter (m) of polygons in the grid's CRS.

    Measured on the WGS 84 ellipsoid in every CRS (see :mod:`geoseg.areas`), so a
    polygon's area equals the sum of its pixels' ground areas.
    """
    return polygon_ground_areas_m2(geometries, grid), polygon_ground_perimeters_m(geometries, grid)


def polygon_table(
    pieces: PolygonPieces,
    grid: RasterGrid,
    *,
    class_names: Mapping[int, str] | None = None,
    provenance: Mapping[str, str] | None = None,
) -> gpd.GeoDataFrame:
    """The attributed polygons of ``pieces`` (pixel coordinates) in the grid's CRS.

    Columns: ``class_id``, ``class_name``, ``area_m2``, ``area_ha``,
    ``perimeter_m``, ``mean_probability`` (when the pieces carry probability
    sums), then the provenance columns ``source``, ``model``, ``run_time``.
    An empty ``pieces`` gives an empty table with the same columns and types.
    """
    names = dict(class_names or {})
    pixel_counts = shapely.area(pieces.geometries).astype(np.float64)
    geometries = pixel_to_crs(pieces.geometries, grid)
    areas, perimeters = ground_measures(geometries, grid)
    count = len(pieces)
    columns: dict[str, object] = {
        "class_id": pieces.class_ids.astype(np.int32),
        "class_name": np.array(
            [names.get(int(value), f"class {int(value)}") for value in pieces.class_ids],
            dtype=object,
        ),
        "area_m2": areas,
        "area_ha": areas / 10_000.0,
        "perimeter_m": perimeters,
    }
    if pieces.probability_sums is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            columns["mean_probability"] = pieces.probability_sums / pixel_counts
    filled = provenance_values(provenance)
    for field in PROVENANCE_FIELDS:
        columns[field] = np.full(count, filled[field], dtype=object)
    return gpd.GeoDataFrame(
        pd.DataFrame(columns), geometry=gpd.GeoSeries(geometries, crs=grid.crs), crs=grid.crs
    )


def provenance_values(provenance: Mapping[str, str] | None) -> dict[str, str]:
    """``source``, ``model`` and ``run_time`` (default: now, UTC, ISO 8601)."""
    given = dict(provenance or {})
    unknown = set(given) - set(PROVENANCE_FIELDS)
    if unknown:
        raise InputError(
            f"unknown provenance fields {sorted(unknown)}; use {list(PROVENANCE_FIELDS)}"
        )
    return {
        "source": given.get("source", ""),
        "model": given.get("model", ""),
        "run_time": given.get("run_time", datetime.now(UTC).isoformat(timespec="seconds")),
    }


def drop_small(table: gpd.GeoDataFrame, min_area_m2: float) -> gpd.GeoDataFrame:
    """The rows of ``table`` whose ``area_m2`` is at least ``min_area_m2``."""
    if min_area_m2 <= 0:
        return table
    return table.loc[table["area_m2"].to_numpy() >= min_area_m2].reset_index(drop=True)


def probability_bands(
    count: int, descriptions: tuple[str, ...], class_names: Mapping[int, str], source: str
) -> dict[int, int]:
    """Which band (1-based) of a probability raster holds each class's probability.

    One band: it holds the probability of the predicted class for every class.
    Bands named after the classes (band descriptions): by name. Otherwise band
    ``class_id + 1`` holds class ``class_id``.
    """
    if count == 1:
        return {class_id: 1 for class_id in range(MAX_CLASS_ID + 1)}
    by_name = {name: index for index, name in enumerate(descriptions, start=1) if name}
    if class_names and all(name in by_name for name in class_names.values()):
        return {class_id: by_name[name] for class_id, name in class_names.items()}
    if not class_names or max(class_names) < count:
        return {class_id: class_id + 1 for class_id in range(count)}
    raise InputError(
        f"{source}: {count} probability bands, but class ids go up to {max(class_names)}; "
        "name the bands after the classes or write one band per class id"
    )


def class_probability(
    labels: NDArray[np.uint8],
    probabilities: NDArray[np.generic],
    band_of_class: Mapping[int, int],
) -> NDArray[np.float32]:
    """Per pixel, the probability (0-1) of its labelled class.

    ``probabilities`` is ``(bands, rows, cols)``; uint8 bands are scaled by
    1/255, float bands are used as they are. Pixels whose class has no band
    get 0.
    """
    scale = 1.0 / 255.0 if probabilities.dtype == np.uint8 else 1.0
    lookup = np.zeros(256, dtype=np.int64)
    for class_id, band in band_of_class.items():
        if 0 <= class_id < 256 and 1 <= band <= probabilities.shape[0]:
            lookup[class_id] = band
    bands = lookup[labels]
    chosen = np.zeros(labels.shape, dtype=np.float32)
    for band in np.unique(bands[bands > 0]):
        where = bands == band
        chosen[where] = probabilities[band - 1][where].astype(np.float32) * np.float32(scale)
    return chosen
