"""Regions for zonal statistics: validation, reprojection and rasterisation.

Regions are polygons with an id (a field of the layer, or the 1-based feature
number). :func:`prepare_regions` validates them once and reprojects them to the
common grid's CRS; after that they are plain shapely geometries that travel to
Dask tasks.

Rasterisation rule: a pixel belongs to a region when its *centre* lies inside
the polygon (GDAL rasterisation with ``all_touched=False``). A centre exactly on
a boundary goes to one side only: the point tested is the centre moved by
``1e-6`` pixel east and north, which also keeps the answer the same whatever
window the pixel is rasterised in. Regions that tile the plane without gaps
therefore count every pixel exactly once.
Regions may overlap: :func:`region_masks` gives one boolean mask per region,
never a single id raster, and only for the regions whose bounds touch the window.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from affine import Affine
from geopandas import GeoDataFrame
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import geometry_mask, rasterize
from shapely.geometry.base import BaseGeometry

from geoseg.errors import InputError, VectorReadError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.io.raster import WARNING_FILTERS_LOCK

DEFAULT_ID_FIELD = "id"

RegionId = str | int
_RASTERIZE_LOCK = WARNING_FILTERS_LOCK  # also guards the warning filters of read_info
# the tested point: the pixel centre moved east and north by this many pixels
_CENTRE_NUDGE = 1e-6


class EmptyRegionWarning(UserWarning):
    """A region covers no valid pixel of the common grid."""


@dataclass(frozen=True)
class Regions:
    """Validated regions in the common grid's CRS.

    Attributes
    ----------
    ids
        One id per region, unique.
    geometries
        Polygons in ``crs`` (possibly empty).
    crs
        The common grid's CRS.
    source
        The file they came from, for messages.
    """

    ids: tuple[RegionId, ...]
    geometries: tuple[BaseGeometry, ...]
    crs: CRS
    source: str

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def bounds(self) -> NDArray[np.float64]:
        """``(regions, 4)`` array of ``(left, bottom, right, top)``; NaN for empty ones."""
        return np.asarray(shapely.bounds(np.asarray(self.geometries, dtype=object)), np.float64)


def _region_id(value: Any) -> RegionId:
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return str(value)


def region_ids(frame: GeoDataFrame, id_field: str | None, source: str) -> tuple[RegionId, ...]:
    """The ids of ``frame``'s features: ``id_field``, else ``id``, else 1, 2, 3...

    Raises
    ------
    VectorReadError
        The field is missing (the message lists the fields there are).
    InputError
        An id is missing or repeated.
    """
    fields = [column for column in frame.columns if column != frame.geometry.name]
    if id_field is None and DEFAULT_ID_FIELD not in fields:
        return tuple(range(1, len(frame) + 1))
    field = id_field or DEFAULT_ID_FIELD
    if field not in fields:
        raise VectorReadError(
            f"{source}: no field {field!r} for the region ids; the fields are {fields}; "
            "pass one of them with --region-id-field"
        )
    values = frame[field]
    if values.isna().any():
        missing = [int(i) + 1 for i in np.flatnonzero(values.isna().to_numpy())]
        raise InputError(f"{source}: features {missing[:10]} have no {field!r}; fill the ids")
    ids = tuple(_region_id(value) for value in values.tolist())
    repeated = sorted({str(value) for value in ids if ids.count(value) > 1})
    if repeated:
        raise InputError(
            f"{source}: region ids repeat in field {field!r}: {repeated[:10]}; "
            "pick a field with one value per region"
        )
    return ids


def prepare_regions(
    frame: GeoDataFrame, grid: RasterGrid, *, id_field: str | None, source: str
) -> Regions:
    """Validate ``frame``'s regions and reproject them to ``grid``'s CRS.

    Raises
    ------
    VectorReadError
        The id field is missing.
    InputError
        No features, no CRS, an invalid geometry (named by region id), or no
        region overlapping the grid.
    """
    if len(frame) == 0:
        raise InputError(f"{source}: the region layer has no features")
    ids = region_ids(frame, id_field, source)
    if frame.crs is None:
        raise InputError(f"{source}: the region layer has no CRS; assign one (ogr2ogr -a_srs)")
    geometries = frame.geometry.to_numpy()
    present = ~shapely.is_missing(geometries)
    invalid = present & ~shapely.is_valid(geometries)
    if invalid.any():
        first = int(np.flatnonzero(invalid)[0])
        reason = shapely.is_valid_reason(geometries[first])
        raise InputError(
            f"{source}: region {ids[first]!r} has an invalid geometry ({reason}); "
            f"{int(invalid.sum())} invalid in all; repair them (e.g. shapely.make_valid "
            "or ogr2ogr -makevalid)"
        )
    projected = frame.geometry.to_crs(grid.crs).to_numpy()
    projected = np.where(shapely.is_missing(projected), shapely.Polygon(), projected)
    outline = shapely.box(*grid.bounds)
    if not shapely.intersects(projected, outline).any():
        raise InputError(
            f"{source}: no region overlaps the rasters (grid bounds {grid.bounds} in "
            f"{grid.crs}); check the region layer and the rasters cover the same area"
        )
    return Regions(ids=ids, geometries=tuple(projected), crs=grid.crs, source=source)


def window_bounds(grid: RasterGrid, window: PixelWindow) -> tuple[float, float, float, float]:
    """``(left, bottom, right, top)`` of ``window`` on ``grid``."""
    return grid.subgrid(window).bounds


def region_masks(
    regions: Regions, grid: RasterGrid, window: PixelWindow
) -> list[tuple[int, NDArray[np.bool_]]]:
    """``(region index, pixel-centre mask)`` for the regions touching ``window``."""
    left, bottom, right, top = window_bounds(grid, window)
    bounds = regions.bounds
    touching = (
        (bounds[:, 0] <= right)
        & (bounds[:, 2] >= left)
        & (bounds[:, 1] <= top)
        & (bounds[:, 3] >= bottom)
    )
    transform = grid.window_transform(window) @ Affine.translation(_CENTRE_NUDGE, -_CENTRE_NUDGE)
    masks: list[tuple[int, NDArray[np.bool_]]] = []
    for index in np.flatnonzero(touching).tolist():
        with _RASTERIZE_LOCK, warnings.catch_warnings():
            # rasterio's in-memory target sometimes warns that it has no geotransform
            # when rasterising from several threads (rasterio/odc-geo issue, spurious:
            # the transform is applied); the lock keeps the filter change thread-safe.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            mask = geometry_mask(
                [regions.geometries[index]],
                out_shape=window.shape,
                transform=transform,
                invert=True,
                all_touched=False,
            )
        if mask.any():
            masks.append((index, mask))
    return masks


EMPTY_REGIONS_SHOWN = 10
"""How many empty regions a warning names; the rest are counted ("and N more")."""


def warn_empty_regions(
    ids: Sequence[RegionId], valid_pixels: NDArray[np.int64], source: str
) -> None:
    """Warn about each region without valid pixels; raise when no region has any.

    Raises
    ------
    InputError
        When every region is empty.
    """
    empty = [ids[index] for index in np.flatnonzero(valid_pixels == 0).tolist()]
    if len(empty) == len(ids):
        raise InputError(
            f"{source}: no region holds a valid pixel of both rasters; check that the "
            "regions and the rasters' valid data overlap"
        )
    if empty:
        shown = ", ".join(str(region) for region in empty[:EMPTY_REGIONS_SHOWN])
        more = len(empty) - EMPTY_REGIONS_SHOWN
        listed = f"{shown} and {more} more" if more > 0 else shown
        warnings.warn(
            f"{source}: {len(empty)} regions hold no valid pixel (outside the rasters, "
            f"all nodata, or smaller than a pixel): {listed}; their rows have zero pixels",
            EmptyRegionWarning,
            stacklevel=2,
        )


def tag_with_regions(polygons: GeoDataFrame, regions: Regions) -> list[str]:
    """For each polygon, the ids of the regions it overlaps, joined by ``","``.

    Ids come in region order; polygons that only touch a region's boundary are
    not tagged with it, and polygons outside every region get ``""``.
    """
    shapes = polygons.geometry.to_numpy()
    tree = shapely.STRtree(np.asarray(regions.geometries, dtype=object))
    polygon_index, region_index = tree.query(shapes, predicate="intersects")
    overlaps = ~shapely.touches(
        shapes[polygon_index], np.asarray(regions.geometries, dtype=object)[region_index]
    )
    order = np.lexsort((region_index, polygon_index))  # region order within each polygon
    tags: list[list[str]] = [[] for _ in range(len(shapes))]
    for position in order[overlaps[order]].tolist():
        tags[int(polygon_index[position])].append(str(regions.ids[int(region_index[position])]))
    return [",".join(names) for names in tags]


def burn_patches(
    geometries: Sequence[Any], numbers: Sequence[int], grid: RasterGrid, window: PixelWindow
) -> NDArray[np.int64]:
    """For each pixel of ``window``, the number of the polygon holding its centre (else -1).

    The polygons are patches of whole pixels (polygonized from this grid), so
    every pixel centre lies clearly inside or outside them; they do not overlap.
    """
    if len(geometries) == 0:
        return np.full(window.shape, -1, dtype=np.int64)
    with _RASTERIZE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        burned = rasterize(
            zip(geometries, (number + 1 for number in numbers), strict=True),
            out_shape=window.shape,
            transform=grid.window_transform(window),
            fill=0,
            dtype=np.uint32,
            all_touched=False,
        )
    numbered: NDArray[np.int64] = burned.astype(np.int64) - 1
    return numbered
