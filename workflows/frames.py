"""Class maps held in xarray to GeoDataFrames and tables: ``geoseg.vectorize``, ``geoseg.change``.

Wiring only: the DataArrays (``geoseg.segment``'s results, or any class map
with a CRS) are normalised by :func:`geoseg.predict.arrays.scene_array` and
handed, still lazy, to the same Dask computations as ``geoseg vectorize``
(:func:`workflows.vectorize.vectorize_labels`) and ``geoseg change``
(:func:`workflows.change.change_statistics`). Nothing is written to disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from geoseg.catalog.stac import region_file
from geoseg.change.classmap import ClassMap, apply_class_map, class_map_for_raster
from geoseg.change.counts import merge_classes, set_forest_classes
from geoseg.change.loss import LossRule
from geoseg.change.regions import prepare_regions
from geoseg.errors import GridMismatchError
from geoseg.grid import RasterGrid
from geoseg.io.vector import read_vector
from geoseg.labels import CLASS_NAMES_TAG, LABEL_NODATA, parse_class_names
from geoseg.predict.arrays import scene_array
from workflows.change import DateLayers, change_statistics
from workflows.vectorize import vectorize_labels


def _labels(labels: xr.DataArray) -> tuple[da.Array, RasterGrid]:
    scene = scene_array(labels, nodata=LABEL_NODATA)
    data = scene.data.data
    codes = data if isinstance(data, da.Array) else da.from_array(data, chunks=2048)
    return codes[0], scene.grid


def vectorize(
    labels: xr.DataArray,
    *,
    classes: Sequence[int] | None = None,
    min_area_m2: float = 0,
    simplify_m: float = 0,
) -> gpd.GeoDataFrame:
    """Polygons of a class map: one per connected patch of a class (4-connected).

    The same polygons as ``geoseg vectorize`` on the same pixels, seam-free
    whatever the chunking (each chunk of ``labels`` is traced by one task).

    Parameters
    ----------
    labels
        Class ids ``(y, x)`` with a CRS, 255 for no data: :func:`geoseg.segment`'s
        result, or any integer class map (e.g. ``rioxarray.open_rasterio``).
    classes
        Polygonize only these class ids (default: all).
    min_area_m2
        Drop polygons of a smaller ground area.
    simplify_m
        Coverage simplification tolerance in metres (0: exact pixel outlines).

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``class_id``, ``class_name`` (from the ``GEOSEG_CLASS_NAMES``
        attribute), ``area_m2``, ``area_ha``, ``perimeter_m`` and the geometry
        in the class map's CRS.
    """
    codes, grid = _labels(labels)
    names_text = labels.attrs.get(CLASS_NAMES_TAG)
    names = parse_class_names(str(names_text), "labels") if names_text else None
    return vectorize_labels(
        codes.astype(np.uint8),
        None,
        grid,
        classes=classes,
        min_area_m2=min_area_m2,
        simplify_m=simplify_m,
        class_names=names,
    )


@dataclass(frozen=True)
class ChangeTables:
    """The change statistics of two dates, as ``geoseg change`` writes them."""

    regions: pd.DataFrame
    """One row per region: areas, masked shares, loss, gain, net change, deforestation."""
    classes: pd.DataFrame
    """One row per region and class: areas at both dates, IoU, Dice."""
    transitions: pd.DataFrame
    """One row per region and from-to class pair: pixels and hectares."""
    deforestation: gpd.GeoDataFrame
    """The kept loss and gain patches (polygons, ``class_id`` 1 loss, 2 gain)."""


def _regions_frame(regions: gpd.GeoDataFrame | str | Path) -> tuple[gpd.GeoDataFrame, str]:
    if isinstance(regions, gpd.GeoDataFrame):
        return regions, "regions"
    path = region_file(regions)
    return read_vector(path), str(path)


def change(
    before: xr.DataArray,
    after: xr.DataArray,
    regions: gpd.GeoDataFrame | str | Path,
    *,
    region_id_field: str | None = None,
    forest_classes: Sequence[int] | None = None,
    class_map: ClassMap | None = None,
    rule: LossRule | None = None,
) -> ChangeTables:
    """Per-region change statistics between two class maps on one grid.

    The same tables as ``geoseg change``: exact integer pixel and area sums,
    whatever the chunking.

    Parameters
    ----------
    before, after
        Class maps ``(y, x)`` on the same grid (e.g. :func:`geoseg.segment` of
        two dates loaded onto one grid); 255 is no data.
    regions
        Region polygons: a GeoDataFrame, a vector file, or a region of the
        catalog (``"zion-park"``, ``"naturalearth-countries"``...).
    region_id_field
        Column holding the region ids (default ``id``, else feature numbers).
    forest_classes
        Class ids counted as forest (default: the classes named ``forest``).
    class_map
        Code-to-class map of both dates (default: the identity map named by
        the ``GEOSEG_CLASS_NAMES`` attribute of :func:`geoseg.segment`'s results).
    rule
        Minimum mapping unit of loss and gain (default
        :class:`geoseg.change.loss.LossRule`).

    Returns
    -------
    ChangeTables
        ``regions``, ``classes`` and ``transitions`` tables and the loss and
        gain patches.

    Raises
    ------
    GridMismatchError
        The two maps are not on one grid (align them first, e.g.
        ``after.rio.reproject_match(before)``).
    GeosegError
        No class names, or no region overlapping the grid.
    """
    before_codes, grid = _labels(before)
    after_codes, after_grid = _labels(after)
    if after_grid != grid:
        raise GridMismatchError(
            f"BEFORE is on {grid.shape} {grid.crs} {tuple(grid.transform)[:6]} but AFTER on "
            f"{after_grid.shape} {after_grid.crs} {tuple(after_grid.transform)[:6]}; put them "
            "on one grid first (after.rio.reproject_match(before, resampling=Resampling.nearest))"
        )
    maps = [
        class_map_for_raster(class_map, {k: str(v) for k, v in array.attrs.items()}, name)
        for array, name in ((before, "BEFORE"), (after, "AFTER"))
    ]
    classes = merge_classes(maps[0].specs(), maps[1].specs())
    if forest_classes:
        classes = set_forest_classes(classes, forest_classes)
    frame, source = _regions_frame(regions)
    prepared = prepare_regions(frame, grid, id_field=region_id_field, source=source)
    layers = [
        DateLayers(da.map_blocks(apply_class_map, codes, mapping, dtype=np.uint8))
        for codes, mapping in ((before_codes, maps[0]), (after_codes, maps[1]))
    ]
    statistics, patches = change_statistics(
        layers[0], layers[1], grid, prepared, classes, rule or LossRule()
    )
    return ChangeTables(
        regions=statistics.regions,
        classes=statistics.classes,
        transitions=statistics.transitions,
        deforestation=patches,
    )
