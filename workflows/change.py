"""Change statistics as Dask graphs: read, count per window, tree-sum, finalize, write.

Both rasters are read lazily onto one common grid (BEFORE's grid clipped to the
overlap, see :func:`geoseg.io.warp.common_grid`), one task per window. Each task
maps codes to classes, rasterises the regions that touch its window and returns
additive :class:`geoseg.change.counts.ChangeCounts`; the counts are summed pairwise in
a tree and turned into tables. Because the counts are exact integers, the
statistics are identical for any ``chunk_size``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import shapely
from dask.base import compute
from dask.delayed import Delayed, delayed
from distributed import Client
from geopandas import GeoDataFrame
from numpy.typing import NDArray

from geoseg.areas import pixel_areas_m2
from geoseg.change.classmap import ClassMap, ClassSpec, apply_class_map, class_map_for_raster
from geoseg.change.counts import (
    ChangeCounts,
    ChangeStatistics,
    area_units,
    class_index_lookup,
    count_window,
    deforestation_mask,
    finalize,
    grid_summary,
    merge_classes,
    set_forest_classes,
)
from geoseg.change.regions import (
    Regions,
    prepare_regions,
    region_masks,
    tag_with_regions,
    warn_empty_regions,
)
from geoseg.errors import ConfigError, OutputError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.io.atomic import atomic_path
from geoseg.io.raster import read_info
from geoseg.io.tables import check_table_path, write_table
from geoseg.io.vector import read_vector, write_layers
from geoseg.io.warp import common_grid, read_on_grid
from workflows.vectorize import vectorize_labels

REGIONS_LAYER = "regions"
DEFORESTATION_LAYER = "deforestation"
GRID_LAYER = "change_grid"


@dataclass(frozen=True)
class ChangeResult:
    """What :func:`change_file` computed and wrote."""

    statistics: ChangeStatistics
    grid: RasterGrid
    classes: tuple[ClassSpec, ...]
    deforestation: GeoDataFrame
    out: Path
    tables: tuple[Path, ...]


def _window_offsets(chunks: tuple[int, ...]) -> list[tuple[int, int]]:
    starts = [0, *accumulate(chunks)][:-1]
    return list(zip(starts, chunks, strict=True))


def _class_ids_window(
    path: Path, grid: RasterGrid, window: PixelWindow, class_map: ClassMap
) -> NDArray[np.uint8]:
    values, valid = read_on_grid(path, grid, window)
    return apply_class_map(values, class_map, valid)


def class_ids_on_grid(
    path: Path, grid: RasterGrid, class_map: ClassMap, chunk_size: int
) -> da.Array:
    """Lazy class ids of ``path`` on ``grid`` (uint8, 255 excluded), one task per window."""
    row_chunks, col_chunks = da.core.normalize_chunks((chunk_size, chunk_size), grid.shape)
    blocks = [
        [
            da.from_delayed(
                delayed(_class_ids_window, pure=True)(
                    path, grid, PixelWindow(row, col, height, width), class_map
                ),
                shape=(height, width),
                dtype=np.uint8,
            )
            for col, width in _window_offsets(col_chunks)
        ]
        for row, height in _window_offsets(row_chunks)
    ]
    ids: da.Array = da.block(blocks)
    return ids


def _count_block(
    before: NDArray[np.uint8],
    after: NDArray[np.uint8],
    grid: RasterGrid,
    window: PixelWindow,
    regions: Regions,
    class_lookup: NDArray[np.int64],
) -> ChangeCounts:
    masks = region_masks(regions, grid, window)
    areas = area_units(pixel_areas_m2(grid, window))
    return count_window(before, after, areas, masks, class_lookup, len(regions))


def _add(left: ChangeCounts, right: ChangeCounts) -> ChangeCounts:
    return left + right


def _tree_sum(parts: Sequence[Delayed]) -> Delayed:
    level = list(parts)
    while len(level) > 1:
        pairs = [delayed(_add)(a, b) for a, b in zip(level[::2], level[1::2], strict=False)]
        level = pairs + ([level[-1]] if len(level) % 2 else [])
    return level[0]


def _compute(value: Any, client: Client | None) -> Any:
    if client is not None:
        return client.compute(value).result()
    return compute(value)[0]


def change_counts(
    before_ids: da.Array,
    after_ids: da.Array,
    grid: RasterGrid,
    regions: Regions,
    classes: Sequence[ClassSpec],
    *,
    client: Client | None = None,
) -> ChangeCounts:
    """Summed :class:`ChangeCounts` of two lazy class-id arrays on ``grid``."""
    after_ids = after_ids.rechunk(before_ids.chunks)
    lookup = class_index_lookup(classes)
    shared_regions = delayed(regions)
    before_blocks = before_ids.to_delayed()
    after_blocks = after_ids.to_delayed()
    parts = [
        delayed(_count_block, pure=True)(
            before_blocks[i, j],
            after_blocks[i, j],
            grid,
            PixelWindow(row, col, height, width),
            shared_regions,
            lookup,
        )
        for i, (row, height) in enumerate(_window_offsets(before_ids.chunks[0]))
        for j, (col, width) in enumerate(_window_offsets(before_ids.chunks[1]))
    ]
    counts: ChangeCounts = _compute(_tree_sum(parts), client)
    return counts


def change_statistics(
    before_ids: da.Array,
    after_ids: da.Array,
    grid: RasterGrid,
    regions: Regions,
    classes: Sequence[ClassSpec],
    *,
    client: Client | None = None,
) -> ChangeStatistics:
    """Change statistics of two lazy class-id arrays (uint8, 255 excluded) on ``grid``.

    Warns (:class:`geoseg.change.regions.EmptyRegionWarning`) about regions without a
    valid pixel and raises when no region has one.
    """
    counts = change_counts(before_ids, after_ids, grid, regions, classes, client=client)
    warn_empty_regions(regions.ids, counts.pixels.sum(axis=(1, 2)), regions.source)
    return finalize(counts, classes, regions.ids)


def deforestation_mask_on_grid(
    before_ids: da.Array, after_ids: da.Array, classes: Sequence[ClassSpec]
) -> da.Array:
    """Lazy mask: 1 where forest became non-forest, 0 elsewhere, 255 excluded."""
    after_ids = after_ids.rechunk(before_ids.chunks)
    mask: da.Array = da.map_blocks(
        deforestation_mask, before_ids, after_ids, classes=tuple(classes), dtype=np.uint8
    )
    return mask


def deforestation_polygons(
    before_ids: da.Array,
    after_ids: da.Array,
    grid: RasterGrid,
    regions: Regions,
    classes: Sequence[ClassSpec],
    *,
    client: Client | None = None,
    provenance: Mapping[str, str] | None = None,
) -> GeoDataFrame:
    """Seam-free polygons of the deforested pixels, with the ``region_ids`` they overlap.

    ``provenance`` gives the ``source``, ``model`` and ``run_time`` columns
    (default ``run_time``: now).
    """
    mask = deforestation_mask_on_grid(before_ids, after_ids, classes)
    polygons = vectorize_labels(
        mask,
        None,
        grid,
        classes=[1],
        client=client,
        class_names={1: "deforestation"},
        provenance=provenance,
    )
    polygons["region_ids"] = tag_with_regions(polygons, regions)
    return polygons


def _table_paths(stats: Path) -> tuple[Path, Path, Path]:
    return (
        stats,
        stats.with_name(f"{stats.stem}.transitions{stats.suffix}"),
        stats.with_name(f"{stats.stem}.regions{stats.suffix}"),
    )


def change_file(
    before: str | Path,
    after: str | Path,
    regions: str | Path,
    out: str | Path,
    *,
    region_layer: str | None = None,
    region_id_field: str | None = None,
    stats: str | Path | None = None,
    forest_classes: Sequence[int] | None = None,
    class_map: ClassMap | None = None,
    before_class_map: ClassMap | None = None,
    after_class_map: ClassMap | None = None,
    chunk_size: int = 4096,
    client: Client | None = None,
    provenance: Mapping[str, str] | None = None,
) -> ChangeResult:
    """Compare two class maps per region and write the GeoPackage (and tables).

    Parameters
    ----------
    before, after
        Class rasters (band 1) of the two dates; any grids and CRSs that overlap.
    regions
        Vector file of region polygons; ``region_layer`` picks a layer and
        ``region_id_field`` the id field (default ``id``, else feature numbers).
    out
        GeoPackage to write: layers ``regions`` (one row per region with its key
        statistics), ``deforestation`` (polygons tagged with ``region_ids``) and
        ``change_grid`` (the common grid and rules).
    stats
        Optional ``.csv`` / ``.parquet``: region x class rows; beside it
        ``<stem>.transitions<ext>`` (region x from x to) and ``<stem>.regions<ext>``.
    forest_classes
        Class ids counted as forest (default: the class maps' ``is_forest``).
    class_map, before_class_map, after_class_map
        Code-to-class maps: one for both dates, or one per date (they win over
        ``class_map``). Default: the identity map named by the raster's
        ``GEOSEG_CLASS_NAMES`` tag (``geoseg predict`` outputs).
    chunk_size
        Window size of the Dask tasks; the statistics do not depend on it.
    client
        Dask client (default: the local scheduler of ``dask.compute``).
    provenance
        ``source``, ``model`` and ``run_time`` of the deforestation polygons
        (default ``run_time``: now).
    """
    before, after, regions, out = Path(before), Path(after), Path(regions), Path(out)
    stats = Path(stats) if stats is not None else None
    if chunk_size <= 0:
        raise ConfigError(f"--chunk-size must be positive, got {chunk_size}")
    if out.suffix.lower() != ".gpkg":
        raise OutputError(f"{out}: the output must be a GeoPackage (.gpkg)")
    table_paths = _table_paths(check_table_path(stats)) if stats is not None else ()
    before_info, after_info = read_info(before), read_info(after)
    grid = common_grid(
        before_info.grid, after_info.grid, before_name=str(before), after_name=str(after)
    )
    before_map = class_map_for_raster(
        before_class_map or class_map, before_info.tags, f"{before} (BEFORE)"
    )
    after_map = class_map_for_raster(
        after_class_map or class_map, after_info.tags, f"{after} (AFTER)"
    )
    classes = merge_classes(before_map.specs(), after_map.specs())
    if forest_classes:
        classes = set_forest_classes(classes, forest_classes)
    prepared = prepare_regions(
        read_vector(regions, layer=region_layer),
        grid,
        id_field=region_id_field,
        source=str(regions),
    )
    before_ids = class_ids_on_grid(before, grid, before_map, chunk_size)
    after_ids = class_ids_on_grid(after, grid, after_map, chunk_size)
    statistics = change_statistics(before_ids, after_ids, grid, prepared, classes, client=client)
    polygons = deforestation_polygons(
        before_ids, after_ids, grid, prepared, classes, client=client, provenance=provenance
    )
    layers = {
        REGIONS_LAYER: GeoDataFrame(
            statistics.regions, geometry=list(prepared.geometries), crs=grid.crs
        ),
        DEFORESTATION_LAYER: polygons,
        GRID_LAYER: GeoDataFrame(
            grid_summary(grid, before=str(before), after=str(after), regions=str(regions)),
            geometry=[shapely.box(*grid.bounds)],
            crs=grid.crs,
        ),
    }
    tables = (statistics.classes, statistics.transitions, statistics.regions)
    with contextlib.ExitStack() as stack:
        # tables go to temporaries first; they are renamed into place only after the
        # GeoPackage has been written, so an error leaves none of the outputs behind
        for frame, path in zip(tables, table_paths, strict=False):
            write_table(frame, stack.enter_context(atomic_path(path)))
        write_layers(out, layers)
    return ChangeResult(statistics, grid, classes, polygons, out, tuple(table_paths))
