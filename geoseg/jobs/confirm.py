"""Confirmation of a job's earlier losses by the class maps of its later runs.

A job's history gives three or more dates: the loss a run found between its
BEFORE and AFTER scenes is *confirmed* when the pixels' next valid observation
(the AFTER class map of a later run, in time order) is non-forest too, and
*unconfirmed* while none is, or when the forest is seen again
(:func:`geoseg.change.loss.confirmation`, as ``geoseg change --later`` does).
A polygon is confirmed when at least half of its ground area is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from geoseg.areas import pixel_areas_m2
from geoseg.change.classmap import ClassMap, ClassSpec, apply_class_map, class_map_for_raster
from geoseg.change.counts import area_units, merge_classes
from geoseg.change.loss import PatchStatus, confirmation
from geoseg.change.regions import burn_patches
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.io.raster import read_info
from geoseg.io.warp import read_on_grid

CONFIRMED, UNCONFIRMED = "confirmed", "unconfirmed"
CONFIRMED_SHARE = 0.5
"""Share of a polygon's area the later dates must confirm for the polygon to be confirmed."""
STATUS_COLUMNS = ("status", "confirmed_share", "later_dates")


def _cover_window(grid: RasterGrid, bounds: tuple[float, float, float, float]) -> PixelWindow:
    """The window of ``grid`` covering ``bounds`` (in the grid's CRS), clipped to the grid."""
    inverse = ~grid.transform
    xs, ys = zip(
        *(inverse @ (x, y) for x in (bounds[0], bounds[2]) for y in (bounds[1], bounds[3])),
        strict=True,
    )
    col0 = max(0, math.floor(min(xs)))
    row0 = max(0, math.floor(min(ys)))
    col1 = min(grid.width, math.ceil(max(xs)))
    row1 = min(grid.height, math.ceil(max(ys)))
    return PixelWindow(row0, col0, max(0, row1 - row0), max(0, col1 - col0))


def _class_maps(paths: Sequence[Path]) -> tuple[tuple[ClassSpec, ...], list[ClassMap]]:
    maps = [class_map_for_raster(None, read_info(path).tags, f"{path} (later)") for path in paths]
    classes: tuple[ClassSpec, ...] = ()
    for class_map in maps:
        classes = merge_classes(classes, class_map.specs())
    return classes, maps


def confirmed_shares(polygons: gpd.GeoDataFrame, later: Sequence[Path]) -> NDArray[np.float64]:
    """For each polygon, the share of its area whose next valid later observation is non-forest.

    ``later`` are class maps (``GEOSEG_CLASS_NAMES`` tag, classes named
    ``forest...`` are forest) in time order, read on the first one's grid.
    NaN where no later date covers the polygon's pixels.
    """
    shares = np.full(len(polygons), np.nan)
    if not later or not len(polygons):
        return shares
    grid = read_info(later[0]).grid
    polygons = polygons.to_crs(grid.crs) if polygons.crs is not None else polygons
    minx, miny, maxx, maxy = (float(value) for value in polygons.total_bounds)
    window = _cover_window(grid, (minx, miny, maxx, maxy))
    if window.height == 0 or window.width == 0:
        return shares
    classes, maps = _class_maps(later)
    ids = []
    for path, class_map in zip(later, maps, strict=True):
        values, valid = read_on_grid(path, grid, window)
        ids.append(apply_class_map(values, class_map, valid))
    next_observation = confirmation(ids, classes)
    areas = area_units(pixel_areas_m2(grid, window))
    # one burn per distinct geometry: a polygon listed once per region it touches
    # is the same patch of pixels
    keys = pd.Series([geometry.wkb for geometry in polygons.geometry])
    unique, inverse = np.unique(keys.to_numpy(), return_inverse=True)
    geometries = [polygons.geometry.iloc[int(np.argmax(inverse == n))] for n in range(len(unique))]
    patch_ids = burn_patches(geometries, range(len(geometries)), grid, window)
    status = PatchStatus.of_window(patch_ids, next_observation == 1, areas)
    result: NDArray[np.float64] = status.confirmed_share(len(geometries))[inverse]
    return result


def with_status(polygons: gpd.GeoDataFrame, later: Sequence[Path]) -> gpd.GeoDataFrame:
    """``polygons`` with ``status``, ``confirmed_share`` and ``later_dates`` (the count used)."""
    share = confirmed_shares(polygons, later)
    result = polygons.copy()
    result["status"] = np.where(share >= CONFIRMED_SHARE, CONFIRMED, UNCONFIRMED)
    result["confirmed_share"] = share
    result["later_dates"] = len(later)
    return result
