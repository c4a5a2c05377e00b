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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from itertools import accumulate
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import shapely
from dask.base import compute
from dask.delayed import Delayed, delayed
from distributed import Client, as_completed
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
    finalize,
    grid_summary,
    merge_classes,
    set_forest_classes,
)
from geoseg.change.flags import Flag, FlagRule, region_flags, season_flags, with_flag_column
from geoseg.change.instance_counts import instance_change, instance_counts
from geoseg.change.loss import (
    PROBABILITY_UNITS,
    LossRule,
    PatchStatus,
    RegionEvidence,
    change_candidates,
    confirmation,
    count_evidence,
    forest_probability,
)
from geoseg.change.regions import (
    Regions,
    burn_patches,
    prepare_regions,
    region_masks,
    tag_with_regions,
    warn_empty_regions,
)
from geoseg.errors import ConfigError, OutputError
from geoseg.grid import PixelWindow, RasterGrid, check_chunk_size
from geoseg.io.atomic import atomic_path
from geoseg.io.instances import read_instances
from geoseg.io.raster import read_info
from geoseg.io.tables import check_table_path, write_table
from geoseg.io.vector import read_vector, write_layers
from geoseg.io.warp import common_grid, read_bands_on_grid, read_on_grid
from geoseg.report.progress import Stage, current
from workflows.vectorize import vectorize_labels

REGIONS_LAYER = "regions"
DEFORESTATION_LAYER = "deforestation"
GAIN_LAYER = "forest_gain"
LOSS, GAIN = 1, 2
GRID_LAYER = "change_grid"
INSTANCE_CHANGE_TABLE = "instances"


@dataclass(frozen=True)
class ChangeResult:
    """What :func:`change_file` computed and wrote."""

    statistics: ChangeStatistics
    flags: tuple[Flag, ...]
    grid: RasterGrid
    classes: tuple[ClassSpec, ...]
    deforestation: GeoDataFrame
    out: Path
    tables: tuple[Path, ...]
    instances: pd.DataFrame | None = None
    """Instances per region and class at both dates (:func:`instance_change`), if given."""


def _window_offsets(chunks: tuple[int, ...]) -> list[tuple[int, int]]:
    starts = [0, *accumulate(chunks)][:-1]
    return list(zip(starts, chunks, strict=True))


def _class_ids_window(
    path: Path,
    grid: RasterGrid,
    window: PixelWindow,
    class_map: ClassMap,
    masks: tuple[Path, ...],
) -> NDArray[np.uint8]:
    values, valid = read_on_grid(path, grid, window)
    for mask in masks:
        masked, seen = read_on_grid(mask, grid, window)
        valid &= ~(seen & (masked != 0))
    return apply_class_map(values, class_map, valid)


def class_ids_on_grid(
    path: Path,
    grid: RasterGrid,
    class_map: ClassMap,
    chunk_size: int,
    masks: Sequence[Path] = (),
) -> da.Array:
    """Lazy class ids of ``path`` on ``grid`` (uint8, 255 excluded), one task per window.

    Pixels that are non-zero in any of ``masks`` (rasters read onto ``grid``)
    are excluded too.
    """
    blocks = [
        [
            da.from_delayed(
                delayed(_class_ids_window, pure=True)(path, grid, window, class_map, tuple(masks)),
                shape=window.shape,
                dtype=np.uint8,
            )
            for window in row
        ]
        for row in grid.chunk_rows(chunk_size)
    ]
    ids: da.Array = da.block(blocks)
    return ids


Counted = tuple[ChangeCounts, RegionEvidence, PatchStatus]


@dataclass(frozen=True)
class WindowPatches:
    """The kept loss / gain patches touching one window, with their global numbers."""

    geometries: tuple[Any, ...]
    numbers: tuple[int, ...]


def _count_block(
    before: NDArray[np.uint8],
    after: NDArray[np.uint8],
    later: Sequence[NDArray[np.uint8]],
    grid: RasterGrid,
    window: PixelWindow,
    regions: Regions,
    classes: tuple[ClassSpec, ...],
    patches: WindowPatches,
    patch_classes: NDArray[np.uint8],
    forest_p: tuple[NDArray[np.int16] | None, NDArray[np.int16] | None],
) -> Counted:
    masks = region_masks(regions, grid, window)
    areas = area_units(pixel_areas_m2(grid, window))
    counts = count_window(before, after, areas, masks, class_index_lookup(classes), len(regions))
    patch_ids = burn_patches(patches.geometries, patches.numbers, grid, window)
    kept = np.zeros(window.shape, dtype=np.uint8)
    inside = patch_ids >= 0
    kept[inside] = patch_classes[patch_ids[inside]]
    confirmed = confirmation(later, classes) == 1 if later else None
    evidence = count_evidence(
        before,
        after,
        classes,
        areas,
        masks,
        len(regions),
        kept_change=kept,
        before_forest_p=forest_p[0],
        after_forest_p=forest_p[1],
        confirmed=confirmed,
    )
    status = (
        PatchStatus.of_window(np.where(kept == LOSS, patch_ids, -1), confirmed, areas)
        if confirmed is not None
        else PatchStatus.empty()
    )
    return counts, evidence, status


def _add(left: Counted, right: Counted) -> Counted:
    return left[0] + right[0], left[1] + right[1], left[2] + right[2]


def _tree_sum(parts: Sequence[Any], add: Callable[[Any, Any], Any] | None = None) -> Any:
    """The pairwise tree sum of ``parts`` with ``add`` (default: delayed; or tasks on a client)."""
    add = add or delayed(_add)
    level = list(parts)
    while len(level) > 1:
        pairs = [add(a, b) for a, b in zip(level[::2], level[1::2], strict=False)]
        level = pairs + ([level[-1]] if len(level) % 2 else [])
    return level[0]


def _compute(value: Any, client: Client | None) -> Any:
    if client is not None:
        return client.compute(value).result()
    return compute(value)[0]


@dataclass(frozen=True)
class DateLayers:
    """One date on the common grid, lazily: class ids and, if known, forest probability."""

    class_ids: da.Array
    forest_probability: da.Array | None = None


def change_candidates_on_grid(
    before: DateLayers, after: DateLayers, classes: Sequence[ClassSpec], rule: LossRule
) -> da.Array:
    """Lazy :func:`geoseg.change.loss.change_candidates`: 1 loss, 2 gain, 0, 255 unseen."""
    chunks = before.class_ids.chunks
    arrays = [
        array.rechunk(chunks) if array is not None else None
        for array in (after.class_ids, before.forest_probability, after.forest_probability)
    ]
    after_ids, before_p, after_p = arrays
    assert after_ids is not None

    def block(
        b: NDArray[np.uint8],
        a: NDArray[np.uint8],
        bp: NDArray[np.int16] | None = None,
        ap: NDArray[np.int16] | None = None,
    ) -> NDArray[np.uint8]:
        return change_candidates(b, a, classes, bp, ap, rule)

    if before_p is None and after_p is None:
        return da.map_blocks(block, before.class_ids, after_ids, dtype=np.uint8)  # type: ignore[no-any-return]
    if before_p is None or after_p is None:
        raise ConfigError(
            "give probabilities for both dates (--before-probabilities and "
            "--after-probabilities) or for neither"
        )
    return da.map_blocks(block, before.class_ids, after_ids, before_p, after_p, dtype=np.uint8)  # type: ignore[no-any-return]


def change_patches(
    before: DateLayers,
    after: DateLayers,
    grid: RasterGrid,
    classes: Sequence[ClassSpec],
    rule: LossRule,
    *,
    client: Client | None = None,
    provenance: Mapping[str, str] | None = None,
) -> GeoDataFrame:
    """Seam-free polygons of confident loss (1) and gain (2) of ``rule.min_loss_ha`` or more."""
    candidates = change_candidates_on_grid(before, after, classes, rule)
    return vectorize_labels(
        candidates,
        None,
        grid,
        classes=[LOSS, GAIN],
        min_area_m2=rule.min_loss_ha * 10_000,
        client=client,
        class_names={LOSS: "forest loss", GAIN: "forest gain"},
        provenance=provenance,
        stage="change: patches",
    )


def _patches_by_window(
    patches: GeoDataFrame, grid: RasterGrid, windows: Sequence[PixelWindow]
) -> list[WindowPatches]:
    """For each window, the patches that touch it, numbered by their row in ``patches``."""
    geometries = patches.geometry.to_numpy()
    tree = shapely.STRtree(geometries)
    found = []
    for window in windows:
        hits = np.sort(tree.query(shapely.box(*grid.subgrid(window).bounds)))
        found.append(WindowPatches(tuple(geometries[hits]), tuple(int(hit) for hit in hits)))
    return found


def change_counts(
    before: DateLayers,
    after: DateLayers,
    grid: RasterGrid,
    regions: Regions,
    classes: Sequence[ClassSpec],
    patches: GeoDataFrame,
    *,
    later: Sequence[DateLayers] = (),
    client: Client | None = None,
) -> Counted:
    """Summed transitions, :class:`RegionEvidence` and :class:`PatchStatus` of two dates.

    ``patches`` are the kept loss and gain polygons (:func:`change_patches`);
    ``later`` dates after AFTER confirm losses (:func:`geoseg.change.loss.confirmation`).
    """
    chunks = before.class_ids.chunks
    shape = (len(chunks[0]), len(chunks[1]))
    windows = [
        PixelWindow(row, col, height, width)
        for row, height in _window_offsets(chunks[0])
        for col, width in _window_offsets(chunks[1])
    ]
    per_window = _patches_by_window(patches, grid, windows)
    patch_classes = delayed(patches["class_id"].to_numpy().astype(np.uint8))
    shared_regions = delayed(regions)

    def blocks(array: da.Array | None) -> Any:
        if array is None:
            return np.full(shape, None, dtype=object)
        return array.rechunk(chunks).to_delayed()

    ids = [blocks(layers.class_ids) for layers in (before, after, *later)]
    forest_p = [blocks(layers.forest_probability) for layers in (before, after)]
    parts = [
        delayed(_count_block, pure=True)(
            ids[0][i, j],
            ids[1][i, j],
            [date_ids[i, j] for date_ids in ids[2:]],
            grid,
            window,
            shared_regions,
            tuple(classes),
            per_window[number],
            patch_classes,
            (forest_p[0][i, j], forest_p[1][i, j]),
        )
        for number, ((i, j), window) in enumerate(zip(np.ndindex(*shape), windows, strict=True))
    ]
    with current().stage("change: counts", len(parts), "windows") as shown:
        if client is None:
            counted: Counted = _compute(_tree_sum(parts), client)
            shown.advance(len(parts))
            return counted
        return _summed_on(client, parts, shown)


def _summed_on(client: Client, parts: Sequence[Delayed], shown: Stage) -> Counted:
    """:func:`_tree_sum` of ``parts`` on ``client``, each part counted in ``shown`` when done.

    The same pairs are added in the same order as in :func:`_tree_sum`, as tasks
    on the workers (the parts never travel through the client).
    """
    futures = client.compute(list(parts))
    total = _tree_sum(futures, lambda a, b: client.submit(_add, a, b, pure=False))
    for _ in as_completed(futures, loop=client.loop):
        shown.advance()
    del futures
    counted: Counted = total.result()
    return counted


def change_statistics(
    before: DateLayers,
    after: DateLayers,
    grid: RasterGrid,
    regions: Regions,
    classes: Sequence[ClassSpec],
    rule: LossRule,
    *,
    later: Sequence[DateLayers] = (),
    client: Client | None = None,
    provenance: Mapping[str, str] | None = None,
) -> tuple[ChangeStatistics, GeoDataFrame]:
    """Statistics and kept loss / gain patches of two dates on ``grid``, in memory.

    The patches (:func:`change_patches`) get ``confirmed_share`` and ``status``
    (``confirmed`` when later dates confirm at least half of a loss patch's area,
    else ``unconfirmed``; empty without later dates). Warns
    (:class:`geoseg.change.regions.EmptyRegionWarning`) about regions without a
    valid pixel and raises when no region has one.
    """
    patches = change_patches(
        before, after, grid, classes, rule, client=client, provenance=provenance
    )
    counts, evidence, status = change_counts(
        before, after, grid, regions, classes, patches, later=later, client=client
    )
    warn_empty_regions(regions.ids, counts.pixels.sum(axis=(1, 2)), regions.source)
    statistics = finalize(counts, classes, regions.ids, evidence, later_dates=len(later))
    patches = patches.copy()
    share = status.confirmed_share(len(patches))
    patches["confirmed_share"] = share
    patches["status"] = np.where(
        np.isnan(share), "", np.where(share >= 0.5, "confirmed", "unconfirmed")
    )
    return statistics, patches


def forest_probability_on_grid(
    path: Path, grid: RasterGrid, classes: Sequence[ClassSpec], chunk_size: int
) -> da.Array:
    """Lazy forest probability (0-255) from a per-class probability raster, on ``grid``.

    Bands are matched to the classes by their descriptions (``geoseg predict``
    names each band after its class), else band ``k`` is the ``k``-th class.
    """
    info = read_info(path)
    forest_names = {spec.name for spec in classes if spec.is_forest}
    if any(info.descriptions):
        bands = [k + 1 for k, name in enumerate(info.descriptions) if name in forest_names]
    elif info.count == len(classes):
        bands = [k + 1 for k, spec in enumerate(classes) if spec.is_forest]
    else:
        bands = []
    if not bands:
        raise ConfigError(
            f"{path}: no band of this probability raster belongs to a forest class "
            f"({sorted(forest_names) or 'no forest class'}); give the per-class probabilities "
            "written by geoseg predict --probabilities for the same model"
        )

    def read(window: PixelWindow) -> NDArray[np.int16]:
        values, valid = read_bands_on_grid(path, bands, None, grid, window)
        if values.dtype.kind == "f":  # probabilities 0-1
            values = np.rint(np.clip(values, 0.0, 1.0) * PROBABILITY_UNITS)
        forest_p = forest_probability(values.astype(np.uint8), range(len(bands)), window.shape)
        assert forest_p is not None
        return np.where(valid, forest_p, 0).astype(np.int16)

    blocks = [
        [
            da.from_delayed(delayed(read, pure=True)(window), shape=window.shape, dtype=np.int16)
            for window in row
        ]
        for row in grid.chunk_rows(chunk_size)
    ]
    layer: da.Array = da.block(blocks)
    return layer


def _table_paths(stats: Path, *, instances: bool = False) -> tuple[Path, ...]:
    kinds = ("transitions", "regions", *(("instances",) if instances else ()))
    return (stats, *(stats.with_name(f"{stats.stem}.{kind}{stats.suffix}") for kind in kinds))


def instance_table(before: GeoDataFrame, after: GeoDataFrame, regions: Regions) -> pd.DataFrame:
    """:func:`instance_change` of two dates' instance polygons, moved to the regions' CRS."""
    crs = regions.crs.to_wkt()
    return instance_change(
        instance_counts(before.to_crs(crs), regions), instance_counts(after.to_crs(crs), regions)
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
    before_probabilities: str | Path | None = None,
    after_probabilities: str | Path | None = None,
    rule: LossRule | None = None,
    masks: Sequence[str | Path] = (),
    later: Sequence[str | Path] = (),
    dates: tuple[date | None, date | None] = (None, None),
    flag_rule: FlagRule | None = None,
    run_flags: Sequence[Flag] = (),
    chunk_size: int = 4096,
    client: Client | None = None,
    provenance: Mapping[str, str] | None = None,
    timestamp: str | None = None,
    input_names: Mapping[str, str] | None = None,
    instances: tuple[str | Path, str | Path] | None = None,
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
        statistics), ``deforestation`` (the kept loss patches, tagged with
        ``region_ids``), ``forest_gain`` and ``change_grid`` (the common grid
        and rules).
    stats
        Optional ``.csv`` / ``.parquet``: region x class rows; beside it
        ``<stem>.transitions<ext>`` (region x from x to) and ``<stem>.regions<ext>``.
    forest_classes
        Class ids counted as forest (default: the class maps' ``is_forest``;
        for ``geoseg predict`` outputs the classes named ``forest``).
    class_map, before_class_map, after_class_map
        Code-to-class maps: one for both dates, or one per date (they win over
        ``class_map``). Default: the identity map named by the raster's
        ``GEOSEG_CLASS_NAMES`` tag (``geoseg predict`` outputs).
    before_probabilities, after_probabilities
        Per-class probability rasters (``geoseg predict --probabilities``) of
        the two dates; without them the class maps count as certain.
    rule
        Confidence and minimum mapping unit of loss and gain (default
        :class:`geoseg.change.loss.LossRule`).
    masks
        Rasters of pixels to leave out at both dates (non-zero = masked): they
        count as masked in the ``masked_*`` columns.
    later
        Class maps of dates after AFTER, in time order (read with AFTER's class
        map): a loss is confirmed where the next valid one is non-forest too;
        the regions get ``loss_confirmed_ha`` / ``loss_unconfirmed_ha`` and the
        loss patches a ``status``.
    dates
        Acquisition dates of BEFORE and AFTER, for the ``season`` flag.
    flag_rule
        Limits of the quality flags (default :class:`geoseg.change.flags.FlagRule`):
        the ``regions`` rows get a ``flags`` column, the run's flags are
        returned and stored in ``change_grid``.
    run_flags
        Run-level flags the caller found (e.g. ``out_of_range`` from the
        predictions), kept with the others.
    chunk_size
        Window size of the Dask tasks; the statistics do not depend on it.
    client
        Dask client (default: the local scheduler of ``dask.compute``).
    provenance
        ``source``, ``model`` and ``run_time`` of the polygons
        (default ``run_time``: now).
    timestamp
        The GeoPackage's change time (default: the clock).
    input_names
        What ``change_grid`` records as ``before``, ``after`` and ``regions``
        (default: the paths given): the inputs as the user named them, when
        the paths are files of a work folder deleted on success.
    instances
        Instance polygons of BEFORE and AFTER (``geoseg predict --polygons``
        with an instance model; layer ``instances`` with ``class`` and
        ``area_m2``, any CRS): the GeoPackage gets the non-spatial table
        ``instances`` (:func:`geoseg.change.instance_counts.instance_change`,
        one row per region and class) and ``stats`` a ``<stem>.instances<ext>``
        beside it.
    """
    rule = rule or LossRule()
    flag_rule = flag_rule or FlagRule()
    names = dict(input_names or {})
    before, after, regions, out = Path(before), Path(after), Path(regions), Path(out)
    stats = Path(stats) if stats is not None else None
    check_chunk_size(chunk_size)
    if out.suffix.lower() != ".gpkg":
        raise OutputError(f"{out}: the output must be a GeoPackage (.gpkg)")
    if (before_probabilities is None) != (after_probabilities is None):
        raise ConfigError(
            "give probabilities for both dates (--before-probabilities and "
            "--after-probabilities) or for neither"
        )
    table_paths = (
        _table_paths(check_table_path(stats), instances=instances is not None)
        if stats is not None
        else ()
    )
    objects = None if instances is None else tuple(read_instances(path) for path in instances)
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
    before_layers, after_layers = (
        DateLayers(
            class_ids_on_grid(path, grid, mapping, chunk_size, [Path(m) for m in masks]),
            None
            if probabilities is None
            else forest_probability_on_grid(Path(probabilities), grid, classes, chunk_size),
        )
        for path, mapping, probabilities in (
            (before, before_map, before_probabilities),
            (after, after_map, after_probabilities),
        )
    )
    later_layers = [
        DateLayers(
            class_ids_on_grid(
                Path(path),
                grid,
                class_map_for_raster(
                    after_class_map or class_map, read_info(path).tags, f"{path} (later)"
                ),
                chunk_size,
                [Path(m) for m in masks],
            )
        )
        for path in later
    ]
    statistics, patches = change_statistics(
        before_layers,
        after_layers,
        grid,
        prepared,
        classes,
        rule,
        later=later_layers,
        client=client,
        provenance=provenance,
    )
    per_region = region_flags(statistics.regions, flag_rule)
    statistics = replace(statistics, regions=with_flag_column(statistics.regions, per_region))
    flags = (
        *season_flags(dates[0], dates[1], flag_rule),
        *run_flags,
        *(f for row in per_region for f in row),
    )
    patches["region_ids"] = tag_with_regions(patches, prepared)
    loss = patches.loc[patches["class_id"] == LOSS].reset_index(drop=True)
    gain = patches.loc[patches["class_id"] == GAIN].reset_index(drop=True)
    layers = {
        REGIONS_LAYER: GeoDataFrame(
            statistics.regions, geometry=list(prepared.geometries), crs=grid.crs
        ),
        DEFORESTATION_LAYER: loss,
        GAIN_LAYER: gain,
        GRID_LAYER: GeoDataFrame(
            grid_summary(
                grid,
                before=names.get("before", str(before)),
                after=names.get("after", str(after)),
                regions=names.get("regions", str(regions)),
                rule=rule,
                probabilities=before_probabilities is not None,
            ).assign(flags=["; ".join(f"{flag.where}: {flag.message}" for flag in flags)]),
            geometry=[shapely.box(*grid.bounds)],
            crs=grid.crs,
        ),
    }
    counted = None if objects is None else instance_table(objects[0], objects[1], prepared)
    tables = [statistics.classes, statistics.transitions, statistics.regions]
    tables += [] if counted is None else [counted]
    with contextlib.ExitStack() as stack:
        # tables go to temporaries first; they are renamed into place only after the
        # GeoPackage has been written, so an error leaves none of the outputs behind
        for frame, path in zip(tables, table_paths, strict=False):
            write_table(frame, stack.enter_context(atomic_path(path)))
        write_layers(
            out,
            layers,
            timestamp=timestamp,
            tables={} if counted is None else {INSTANCE_CHANGE_TABLE: counted},
        )
    return ChangeResult(statistics, flags, grid, classes, loss, out, tuple(table_paths), counted)
