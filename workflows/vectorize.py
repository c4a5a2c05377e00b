"""Seam-free vectorization of a class map on Dask.

One task per chunk polygonizes it (:func:`geoseg.vector.polygonize.polygonize_chunk`)
and returns its finished polygons plus the pieces cut by a chunk seam, with
the piece ids along the chunk's edges. For a GeoPackage the task also builds
the finished polygons' rows (attributes, CRS coordinates, WKB), so the client
only writes them, in chunk order, as chunks complete (workers polygonize while
the client writes), and merges the seam pieces at the end. With
simplification, every polygon is gathered first: coverage simplification needs
all neighbours at once.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from dask.base import compute
from dask.delayed import delayed
from distributed import Client, as_completed
from numpy.typing import NDArray

from geoseg.areas import pixel_size_m
from geoseg.errors import GridMismatchError, InputError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.io.geoparquet import write_geoparquet
from geoseg.io.raster import RasterInfo, read_info, read_valid_mask, read_window
from geoseg.io.vector import GeoPackageWriter, open_geopackage, polygon_format
from geoseg.io.warp import read_mask_on_grid
from geoseg.labels import CLASS_NAMES_TAG, MODEL_TAG, colours_of_table, parse_class_names
from geoseg.report.progress import Stage, current, showing, stages
from geoseg.vector.features import feature_table, layer_name
from geoseg.vector.polygonize import (
    ChunkPolygons,
    PolygonPieces,
    concat_pieces,
    empty_pieces,
    merge_seam_pieces,
    polygonize_chunk,
)
from geoseg.vector.polygons import (
    class_probability,
    drop_small,
    polygon_table,
    probability_bands,
    provenance_values,
    simplify_coverage,
)
from geoseg.vector.style import class_style_qml
from workflows.tasks import geoseg_task


def _read_labels(path: Path, window: PixelWindow) -> NDArray[np.uint8]:
    return np.asarray(read_window(path, window, bands=[1])[0], dtype=np.uint8)


def _read_probability(
    path: Path, window: PixelWindow, labels: NDArray[np.uint8], band_of_class: dict[int, int]
) -> NDArray[np.float32]:
    return class_probability(labels, read_window(path, window), band_of_class)


def lazy_labels(path: Path, grid: RasterGrid, chunk_size: int) -> tuple[da.Array, da.Array]:
    """The label band and its validity mask as dask arrays, one chunk per window."""
    windows = grid.chunk_rows(chunk_size)
    labels = da.block(
        [
            [
                da.from_delayed(
                    delayed(geoseg_task(_read_labels), pure=True)(path, window),
                    window.shape,
                    np.uint8,
                )
                for window in row
            ]
            for row in windows
        ]
    )
    valid = da.block(
        [
            [
                da.from_delayed(
                    delayed(geoseg_task(read_valid_mask), pure=True)(path, window),
                    window.shape,
                    bool,
                )
                for window in row
            ]
            for row in windows
        ]
    )
    return labels, valid


def lazy_unmasked(masks: Sequence[Path], grid: RasterGrid, chunk_size: int) -> da.Array:
    """Pixels no mask raster of ``masks`` marks (band 1 non-zero), one chunk per window."""
    unmasked: da.Array = da.block(
        [
            [
                ~da.from_delayed(
                    delayed(read_mask_on_grid, pure=True)(tuple(masks), grid, window),
                    window.shape,
                    bool,
                )
                for window in row
            ]
            for row in grid.chunk_rows(chunk_size)
        ]
    )
    return unmasked


def lazy_probability(
    path: Path, labels: da.Array, grid: RasterGrid, band_of_class: dict[int, int]
) -> da.Array:
    """Per pixel, the probability of its labelled class, chunked like ``labels``."""
    blocks = labels.to_delayed()
    rows: list[list[da.Array]] = []
    row_start = 0
    for block_row, height in enumerate(labels.chunks[0]):
        col_start = 0
        row: list[da.Array] = []
        for block_col, width in enumerate(labels.chunks[1]):
            window = PixelWindow(row_start, col_start, height, width)
            task = delayed(geoseg_task(_read_probability), pure=True)(
                path, window, blocks[block_row, block_col], band_of_class
            )
            row.append(da.from_delayed(task, window.shape, np.float32))
            col_start += width
        rows.append(row)
        row_start += height
    stacked: da.Array = da.block(rows)
    return stacked


def _chunk_tasks(
    labels: da.Array,
    valid: da.Array | None,
    probability: da.Array | None,
    grid: RasterGrid,
    classes: Sequence[int] | None,
    chunk_task: Callable[..., Any] = polygonize_chunk,
    /,
    **options: Any,
) -> list[Any]:
    """One delayed ``chunk_task(labels, valid, window, raster_shape, ...)`` per chunk."""
    if labels.ndim != 2 or labels.shape != grid.shape:
        raise InputError(f"labels must be a 2-D array of shape {grid.shape}, got {labels.shape}")
    label_blocks = labels.to_delayed()
    valid_blocks = None if valid is None else valid.rechunk(labels.chunks).to_delayed()
    probability_blocks = (
        None if probability is None else probability.rechunk(labels.chunks).to_delayed()
    )
    tasks = []
    row_start = 0
    for block_row, height in enumerate(labels.chunks[0]):
        col_start = 0
        for block_col, width in enumerate(labels.chunks[1]):
            index = (block_row, block_col)
            tasks.append(
                delayed(chunk_task, pure=True)(
                    label_blocks[index],
                    None if valid_blocks is None else valid_blocks[index],
                    PixelWindow(row_start, col_start, height, width),
                    grid.shape,
                    classes=None if classes is None else list(classes),
                    probability=None if probability_blocks is None else probability_blocks[index],
                    **options,
                )
            )
            col_start += width
        row_start += height
    return tasks


def _completed(tasks: list[Any], client: Client | None, stage: str) -> Iterator[Any]:
    """Chunk results in task order, each yielded as soon as it and all before it are done.

    Task order (not completion order) keeps the polygon order, and so the bytes
    of the written GeoPackage, the same on every run and cluster. Each task is
    submitted with a priority falling with its position, so workers finish
    chunks in that order too and the client never waits for an early chunk
    while later ones pile up. The chunks done are counted in the display's
    stage named ``stage``.
    """
    with current().stage(stage, len(tasks), "chunks") as shown:
        if client is None:
            results = compute(*tasks)
            shown.advance(len(results))
            yield from results
            return
        futures = [client.compute(task, priority=-index) for index, task in enumerate(tasks)]
        yield from _in_order(futures, client, shown)


def polygon_batches(
    labels: da.Array,
    valid: da.Array | None,
    grid: RasterGrid,
    *,
    probability: da.Array | None = None,
    classes: Sequence[int] | None = None,
    client: Client | None = None,
    stage: str = "vectorize",
) -> Iterator[PolygonPieces]:
    """Finished polygons (pixel coordinates) batch by batch, in chunk order.

    Each chunk's polygons that touch no seam come as soon as the chunk is
    done; the polygons merged across seams come last. ``stage``: the name the
    progress display shows.
    """
    with_probability = probability is not None
    seams: list[ChunkPolygons] = []
    tasks = _chunk_tasks(labels, valid, probability, grid, classes)
    for chunk in _completed(tasks, client, stage):
        yield chunk.interior
        seams.append(replace(chunk, interior=empty_pieces(with_probability)))
    yield merge_seam_pieces(seams, with_probability)


def _finished_chunk(
    labels: NDArray[np.uint8],
    valid: NDArray[np.bool_] | None,
    window: PixelWindow,
    raster_shape: tuple[int, int],
    *,
    classes: Sequence[int] | None,
    probability: NDArray[np.floating] | None,
    grid: RasterGrid,
    class_names: Mapping[int, str],
    provenance: Mapping[str, str],
    min_area_m2: float,
) -> tuple[pa.Table, ChunkPolygons]:
    """A chunk's finished polygons as rows ready to write, and its seam pieces.

    Runs on a worker, so the attribute table and WKB of most polygons are
    built in parallel and only the seam pieces are left for the seam merge.
    """
    chunk = polygonize_chunk(
        labels, valid, window, raster_shape, classes=classes, probability=probability
    )
    table = polygon_table(chunk.interior, grid, class_names=class_names, provenance=provenance)
    rows = feature_table(drop_small(table, min_area_m2))
    return rows, replace(chunk, interior=empty_pieces(probability is not None))


def _merged_rows(
    seams: list[ChunkPolygons],
    *,
    with_probability: bool,
    grid: RasterGrid,
    class_names: Mapping[int, str],
    provenance: Mapping[str, str],
    min_area_m2: float,
) -> pa.Table:
    """The rows of the polygons merged across seams (a task of its own on a cluster)."""
    merged = merge_seam_pieces(seams, with_probability)
    table = polygon_table(merged, grid, class_names=class_names, provenance=provenance)
    return feature_table(drop_small(table, min_area_m2))


def _rows_in_order(
    tasks: list[Any],
    merge: Callable[[list[ChunkPolygons]], pa.Table],
    client: Client | None,
    stage: str,
) -> Iterator[pa.Table]:
    """Each chunk's rows in task order as soon as they are done, then the merged rows.

    On a cluster the seam merge is one more task: the seam pieces go from
    worker to worker, never through the client, which only receives rows to
    write (and writes the last chunks' rows while a worker merges). The
    display's stage ``stage`` counts the chunks and the merge.
    """
    with current().stage(stage, len(tasks) + 1, "chunks") as shown:
        if client is None:
            results = compute(*tasks)
            shown.advance(len(results))
            yield from (rows for rows, _ in results)
            yield merge([seam for _, seam in results])
            shown.advance()
            return
        row_futures, seam_futures = [], []
        for index, task in enumerate(tasks):  # priorities: workers take chunks in task order
            chunk = client.compute(task, priority=-index)
            row_futures.append(client.submit(operator.itemgetter(0), chunk, priority=-index))
            seam_futures.append(client.submit(operator.itemgetter(1), chunk, priority=-index))
            chunk.release()
        merged = client.submit(merge, seam_futures, priority=-len(tasks))
        del seam_futures
        yield from _in_order(row_futures, client, shown)
        yield merged.result()
        shown.advance()


def _in_order(futures: list[Any], client: Client, shown: Stage) -> Iterator[Any]:
    """Results of ``futures`` in list order, each as soon as it and all before it are done.

    ``shown`` counts each as it completes.
    """
    position = {future.key: index for index, future in enumerate(futures)}
    finished: dict[int, Any] = {}
    next_index = 0
    for future in as_completed(futures, loop=client.loop):
        finished[position[future.key]] = future.result()
        future.release()
        shown.advance()
        while next_index in finished:
            yield finished.pop(next_index)
            next_index += 1


def feature_batches(
    labels: da.Array,
    valid: da.Array | None,
    grid: RasterGrid,
    *,
    probability: da.Array | None = None,
    classes: Sequence[int] | None = None,
    client: Client | None = None,
    class_names: Mapping[int, str] | None = None,
    provenance: Mapping[str, str] | None = None,
    min_area_m2: float = 0,
    stage: str = "vectorize",
) -> Iterator[pa.Table]:
    """Rows ready for :meth:`GeoPackageWriter.write_table`, batch by batch, in chunk order.

    Workers polygonize each chunk and build the rows of its polygons that
    touch no seam (attributes, CRS coordinates, WKB), and merge the seam
    pieces, whose rows come last: the client only writes. The rows equal those
    of :func:`vectorize_labels` without simplification, in the same order.
    """
    options: dict[str, Any] = {
        "grid": grid,
        "class_names": dict(class_names or {}),
        "provenance": provenance_values(provenance),
        "min_area_m2": min_area_m2,
    }
    tasks = _chunk_tasks(labels, valid, probability, grid, classes, _finished_chunk, **options)
    merge = partial(_merged_rows, with_probability=probability is not None, **options)
    yield from _rows_in_order(tasks, merge, client, stage)


def vectorize_labels(
    labels: da.Array,
    valid: da.Array | None,
    grid: RasterGrid,
    *,
    probability: da.Array | None = None,
    classes: Sequence[int] | None = None,
    min_area_m2: float = 0,
    simplify_m: float = 0,
    client: Client | None = None,
    class_names: Mapping[int, str] | None = None,
    provenance: Mapping[str, str] | None = None,
    stage: str = "vectorize",
) -> gpd.GeoDataFrame:
    """Polygons of a dask-backed class map, equal to whole-raster polygonization.

    Parameters
    ----------
    labels
        2-D uint8 class ids on ``grid``; its chunks are the vectorize chunks.
    valid
        Pixels holding data (None: every pixel whose label is not 255).
    grid
        The raster grid of ``labels``.
    probability
        Per pixel, the probability (0-1) of its labelled class; adds
        ``mean_probability``.
    classes
        Polygonize only these class ids.
    min_area_m2
        Drop polygons smaller than this ground area.
    simplify_m
        Coverage-simplification tolerance in metres (0: none).
    client
        Dask client (None: the default local scheduler).
    class_names
        Names per class id for ``class_name``.
    provenance
        ``source``, ``model``, ``run_time`` columns.
    stage
        Its name in the progress display (:func:`geoseg.report.progress.current`).
    """
    with_probability = probability is not None
    pieces = concat_pieces(
        list(
            polygon_batches(
                labels,
                valid,
                grid,
                probability=probability,
                classes=classes,
                client=client,
                stage=stage,
            )
        ),
        with_probability,
    )
    if simplify_m > 0:
        tolerance = simplify_m / pixel_size_m(grid)
        pieces = replace(pieces, geometries=simplify_coverage(pieces.geometries, tolerance))
    table = polygon_table(pieces, grid, class_names=class_names, provenance=provenance)
    return drop_small(table, min_area_m2)


def _class_names(info: RasterInfo, given: Mapping[int, str] | None) -> dict[int, str]:
    if given is not None:
        return dict(given)
    tag = info.tags.get(CLASS_NAMES_TAG)
    return {} if tag is None else parse_class_names(tag, str(info.path))


def _colours(
    info: RasterInfo, given: Mapping[int, tuple[int, int, int]] | None
) -> dict[int, tuple[int, int, int]]:
    if given is not None:
        return dict(given)
    return colours_of_table(info.colormap or {})


def _noting_classes(tables: Iterable[pa.Table], seen: set[int]) -> Iterator[pa.Table]:
    """``tables`` unchanged, adding every class id they hold to ``seen``."""
    for table in tables:
        seen.update(int(value) for value in pc.unique(table.column("class_id")).to_pylist())
        yield table


def _write_by_class(
    writer: GeoPackageWriter, tables: Iterable[pa.Table], layer_of: Callable[[int], str]
) -> pa.Table:
    """Write every table's rows to their class's layer; returns an empty table (the schema)."""
    empty = None
    for table in tables:
        empty = table.slice(0, 0)
        class_ids = table.column("class_id").to_numpy()
        by_layer: dict[str, list[int]] = {}
        for class_id in (int(value) for value in pd.unique(class_ids)):
            by_layer.setdefault(layer_of(class_id), []).append(class_id)
        for name, ids in by_layer.items():
            rows = table if len(by_layer) == 1 else table.filter(np.isin(class_ids, ids))
            writer.write_table(name, rows)
    if empty is None:
        raise InputError("vectorizing produced no table at all; the raster has no chunks")
    return empty


def vectorize_file(
    labels: Path,
    out: Path,
    *,
    layer: str | None = None,
    probabilities: Path | None = None,
    classes: list[int] | None = None,
    min_area_m2: float = 0,
    simplify_m: float = 0,
    layer_per_class: bool = False,
    chunk_size: int = 4096,
    client: Client | None = None,
    class_names: dict[int, str] | None = None,
    colours: dict[int, tuple[int, int, int]] | None = None,
    provenance: dict[str, str] | None = None,
    timestamp: str | None = None,
    masks: Sequence[Path] = (),
    progress: bool = True,
) -> dict[str, int]:
    """Vectorize a class-map GeoTIFF into GeoPackage layers or a GeoParquet file (atomically).

    ``out``'s suffix picks the format: ``.gpkg`` (GeoPackage, with QGIS styles)
    or ``.parquet`` (GeoParquet 1.1 with a covering bbox column, the same rows
    and columns as the GeoPackage layer; one layer, so no ``layer_per_class``).
    Class names come from ``class_names`` or the raster's ``GEOSEG_CLASS_NAMES``
    tag, colours from ``colours`` or its colour table. With
    ``layer_per_class`` each class gets a layer ``<layer>_<class name>``;
    otherwise one layer (default: the raster's file stem) holds every class.
    ``timestamp`` is the GeoPackage's change time (default: the clock).
    Pixels marked in any of ``masks`` (rasters read onto the class map's grid,
    band 1 non-zero = masked) are not polygonized. ``progress``: show the
    ``vectorize`` stage (:func:`geoseg.report.progress.current`), chunk by chunk.

    Returns
    -------
    dict
        Feature count per layer written.
    """
    labels, out = Path(labels), Path(out)
    geoparquet = polygon_format(out) == "parquet"
    if geoparquet and layer_per_class:
        raise InputError(
            f"{out}: a GeoParquet file holds one layer; write a .gpkg for one layer per class"
        )
    info = read_info(labels)
    grid = info.grid
    names = _class_names(info, class_names)
    colour_of = _colours(info, colours)
    filled = provenance_values(
        {"source": str(labels), "model": info.tags.get(MODEL_TAG, ""), **(provenance or {})}
    )
    label_array, valid = lazy_labels(labels, grid, chunk_size)
    if masks:
        for mask in masks:
            read_info(mask)  # a clear error before any task runs
        valid = valid & lazy_unmasked([Path(mask) for mask in masks], grid, chunk_size)
    probability = None
    if probabilities is not None:
        probability_info = read_info(probabilities)
        if probability_info.grid != grid:
            raise GridMismatchError(
                f"{probabilities}: its grid differs from {labels}; write the probabilities "
                "on the label raster's grid"
            )
        bands = probability_bands(
            probability_info.count, probability_info.descriptions, names, str(probabilities)
        )
        probability = lazy_probability(probabilities, label_array, grid, bands)
    base = layer_name(layer or labels.stem)
    requested = set(classes) if classes is not None else set(names)

    def layer_of(class_id: int) -> str:
        if not layer_per_class:
            return base
        return f"{base}_{layer_name(names.get(class_id, f'class {class_id}'))}"

    tables: Iterable[pa.Table]
    if simplify_m > 0:  # coverage simplification needs every polygon at once
        with showing(stages(progress)):
            simplified = vectorize_labels(
                label_array,
                valid,
                grid,
                probability=probability,
                classes=classes,
                min_area_m2=min_area_m2,
                simplify_m=simplify_m,
                client=client,
                class_names=names,
                provenance=filled,
            )
        tables = [feature_table(simplified)]
    else:  # workers build the finished polygons' rows; the client writes them in order
        tables = feature_batches(
            label_array,
            valid,
            grid,
            probability=probability,
            classes=classes,
            client=client,
            class_names=names,
            provenance=filled,
            min_area_m2=min_area_m2,
        )
    if geoparquet:
        with showing(stages(progress)):
            return {base: write_geoparquet(out, tables)}
    seen: set[int] = set()
    with showing(stages(progress)), open_geopackage(out, timestamp=timestamp) as writer:
        if layer_per_class:
            empty = _write_by_class(writer, _noting_classes(tables, seen), layer_of)
            expected = {layer_of(class_id) for class_id in seen | requested}
            for name in sorted(expected - set(writer.counts)):  # empty layers keep the schema
                writer.write_table(name, empty)
        else:  # one pass: rows go to the file as they come, the index is built once
            writer.write_stream(base, _noting_classes(tables, seen))
        all_ids = sorted(seen | requested)
        for name in writer.counts:
            in_layer = [class_id for class_id in all_ids if layer_of(class_id) == name]
            writer.set_style(name, class_style_qml(in_layer, names, colour_of))
    return writer.counts
