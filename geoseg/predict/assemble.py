"""The chunk task of a prediction run: stitch one output chunk and write it.

:func:`assemble_chunk` gathers the stored parts of the tiles touching one
output chunk, :func:`stitch_chunk` (pure: arrays in, arrays out) pastes their
solo labels and blends the shared bands in canonical order, and the chunk's
label (and probability) GeoTIFFs, with their share of every overview level,
are written into the work directory with a small summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geoseg.grid import PixelWindow
from geoseg.io.cog import write_chunk
from geoseg.io.workdir import (
    ChunkSummary,
    TileBatchFile,
    chunk_path,
    overview_chunk_path,
    write_summary,
)
from geoseg.labels import LABEL_NODATA
from geoseg.predict.blending import blend_window, labels_from_probabilities, quantize_probabilities
from geoseg.predict.overviews import decimate, overview_factors
from geoseg.predict.plan import PredictPlan, batch_parts
from geoseg.predict.stitching import (
    PartsPlace,
    TileBatch,
    TileParts,
    parts_places,
    shared_windows,
    tile_regions,
)
from geoseg.predict.tiling import TileLayout, tiles_touching

STRIP_BYTES = 16 * 2**20
"""Size of the float32 accumulator a chunk is blended in, strip by strip."""


def blend_strips(window: PixelWindow, num_classes: int) -> list[PixelWindow]:
    """Full-width row strips of ``window`` whose accumulators hold about ``STRIP_BYTES``.

    Blending is per pixel, so strips give exactly the chunk's values; small
    accumulators stay in cache and in the allocator's heap instead of being
    page-faulted in for every chunk (measured 3.5 -> 0.7 ms per tile of CPU in
    a worker thread).
    """
    rows = max(1, STRIP_BYTES // (4 * num_classes * max(1, window.width)))
    return [
        PixelWindow(window.row + start, window.col, min(rows, window.height - start), window.width)
        for start in range(0, window.height, rows)
    ]


ASSEMBLE_STRIP_BYTES = 8 * 2**20
"""Size of a chunk's class planes over one strip it is stitched by (see :func:`assemble_strips`)."""


def assemble_strips(window: PixelWindow, num_classes: int) -> list[PixelWindow]:
    """Full-width row strips of ``window`` that a chunk is read and stitched by.

    A strip's class planes (float32) hold about ``ASSEMBLE_STRIP_BYTES``
    (128 rows of a 2048 px chunk of 8 classes). Each strip reads only the
    rows of its tiles' parts it needs (:func:`gather_tiles`) and lets them go
    before the next, so a chunk task holds one strip's parts, whatever the
    chunk's tiles. That matters at the bottom of a scene off the tile
    lattice: its last tile row is snapped to the border and shares most of
    its rows with the row above, so a chunk there has several times the usual
    parts (holding whole chunks' parts made the workers' peak grow from 445
    MiB at 4096 px to 600-680 MiB at 8192 and 16384 px). Stitching is per
    pixel, so strips give exactly the chunk's values.
    """
    rows = max(16, ASSEMBLE_STRIP_BYTES // (4 * num_classes * max(1, window.width)))
    return [
        PixelWindow(window.row + start, window.col, min(rows, window.height - start), window.width)
        for start in range(0, window.height, rows)
    ]


def stitch_chunk(
    layout: TileLayout,
    window: PixelWindow,
    tiles: Mapping[int, TileParts],
    valid: NDArray[np.bool_],
    class_ids: Sequence[int],
    with_probabilities: bool,
) -> tuple[NDArray[np.uint8], NDArray[np.uint8] | None]:
    """The labels (and quantized probabilities) of ``window`` from its tiles' parts.

    Where one tile is alone, its solo results are pasted; where tiles overlap,
    their stored bands are blended (in ascending tile index, strip by strip,
    see :func:`blend_strips`). The result equals blending every pixel from the
    whole tiles, whatever the chunk.

    Parameters
    ----------
    layout
        The scene's tile grid.
    window
        The output chunk.
    tiles
        The parts of every tile that touches ``window``, by tile index (others
        are ignored).
    valid
        Validity of the chunk's pixels, ``window.shape``.
    class_ids
        The class id of each model output channel.
    with_probabilities
        Also return the quantized probabilities (the parts must hold solo
        probabilities).

    Returns
    -------
    tuple
        uint8 labels ``window.shape`` (nodata where invalid) and uint8
        probabilities ``(classes, h, w)`` (None without ``with_probabilities``).
    """
    num_classes = len(class_ids)
    labels = np.empty(window.shape, dtype=np.uint8)
    quantized = np.empty((num_classes if with_probabilities else 0, *window.shape), np.uint8)
    regions = {index: tile_regions(layout, index) for index in tiles}
    for parts in tiles.values():  # where one tile is alone: its own results
        solo = parts.solo
        common = solo.intersection(window)
        if common.is_empty:
            continue
        rows, cols = common.shift(-window.row, -window.col).slices()
        solo_rows, solo_cols = common.shift(-solo.row, -solo.col).slices()
        labels[rows, cols] = parts.solo_labels[solo_rows, solo_cols]
        if parts.solo_probabilities is not None:
            quantized[:, rows, cols] = parts.solo_probabilities[:, solo_rows, solo_cols]
    for shared in shared_windows(layout, window):  # where tiles overlap: blended
        contributions = [
            (index, parts.bands)
            for index, parts in tiles.items()
            if not regions[index].positive.intersection(shared).is_empty
        ]
        for strip in blend_strips(shared, num_classes):
            rows, cols = strip.shift(-window.row, -window.col).slices()
            probabilities = blend_window(
                layout, strip, contributions, valid[rows, cols], num_classes
            )
            labels[rows, cols] = labels_from_probabilities(
                probabilities, valid[rows, cols], list(class_ids), LABEL_NODATA
            )
            if with_probabilities:
                quantized[:, rows, cols] = quantize_probabilities(probabilities, valid[rows, cols])
    return labels, quantized if with_probabilities else None


def _rows_of(window: PixelWindow, rows: PixelWindow) -> PixelWindow:
    """The full-width rows of ``window`` that lie in the rows of ``rows`` (maybe empty)."""
    start = max(window.row, rows.row)
    return PixelWindow(
        start, window.col, max(0, min(window.row_stop, rows.row_stop) - start), window.width
    )


def read_parts(
    batch: TileBatchFile, place: PartsPlace, window: PixelWindow, num_classes: int
) -> TileParts:
    """The rows of one tile's parts that ``window`` needs, read from its batch file.

    Bands and the solo results are cut to the rows of ``window`` (full width:
    each plane's rows are contiguous in the file), so a chunk task reads and
    holds only what it blends or pastes.
    """
    bands = []
    for band, at in place.bands:
        piece = _rows_of(band, window)
        if piece.is_empty:
            continue
        values = np.empty((num_classes, *piece.shape), dtype=np.float32)
        skip = (piece.row - band.row) * band.width
        for plane in range(num_classes):
            batch.read_bands(at + plane * band.height * band.width + skip, values[plane])
        bands.append((piece, values))
    solo = _rows_of(place.solo, window)
    skip = (solo.row - place.solo.row) * place.solo.width
    labels = np.empty(solo.shape, dtype=np.uint8)
    batch.read_solo(place.labels_at + skip, labels)
    probabilities = None
    if place.probabilities_at is not None:
        probabilities = np.empty((num_classes, *solo.shape), dtype=np.uint8)
        plane_size = place.solo.height * place.solo.width
        for plane in range(num_classes):
            batch.read_solo(
                place.probabilities_at + plane * plane_size + skip, probabilities[plane]
            )
    return TileParts(place.index, tuple(bands), labels, probabilities, solo)


def gather_tiles(
    plan: PredictPlan,
    window: PixelWindow,
    batches: Sequence[tuple[Sequence[int], TileBatch | Path]],
) -> tuple[dict[int, TileParts], NDArray[np.bool_]]:
    """The parts of the tiles touching ``window`` and the validity of its pixels.

    ``batches`` are ``(tile indexes, batch or batch file)``; of batch files
    only the rows ``window`` needs are read (:func:`read_parts`).
    """
    layout = plan.layout
    touching = set(tiles_touching(layout, window))
    kept: dict[int, TileParts] = {}
    valid = np.zeros(window.shape, dtype=bool)
    # validity is per pixel, so every tile over a pixel agrees on it
    for indexes, stored in batches:
        if touching.isdisjoint(indexes):
            continue
        if isinstance(stored, TileBatch):
            for position, parts in enumerate(batch_parts(plan, indexes, stored)):
                if parts.index in touching:
                    kept[parts.index] = parts
                    (rows, cols), (tile_rows, tile_cols) = _overlap(layout, parts.index, window)
                    valid[rows, cols] = stored.valid[position, tile_rows, tile_cols]
            continue
        places = parts_places(layout, indexes, plan.num_classes, plan.write_probabilities)
        with TileBatchFile(stored, layout.tile) as batch:
            for position, place in enumerate(places):
                if place.index in touching:
                    kept[place.index] = read_parts(batch, place, window, plan.num_classes)
                    (rows, cols), (tile_rows, tile_cols) = _overlap(layout, place.index, window)
                    valid[rows, cols] = batch.read_valid(position, tile_rows)[:, tile_cols]
    return kept, valid


def _overlap(
    layout: TileLayout, index: int, window: PixelWindow
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices of where tile ``index`` and ``window`` overlap, in the window and in the tile."""
    tile_window = layout.window(index)
    common = tile_window.intersection(window)
    return (
        common.shift(-window.row, -window.col).slices(),
        common.shift(-tile_window.row, -tile_window.col).slices(),
    )


def assemble_chunk(
    plan: PredictPlan,
    window: PixelWindow,
    batches: Sequence[tuple[Sequence[int], TileBatch | Path]],
) -> ChunkSummary:
    """Stitch the tiles touching ``window`` and write the chunk's GeoTIFF(s).

    Parameters
    ----------
    plan
        The run.
    window
        The output chunk.
    batches
        ``(tile indexes, batch or batch file)`` of every batch holding a tile
        that touches ``window``.

    Returns
    -------
    ChunkSummary
        Valid-pixel and per-class counts; also written beside the chunk.
    """
    labels = np.empty(window.shape, dtype=np.uint8)
    probabilities = (
        np.empty((plan.num_classes, *window.shape), dtype=np.uint8)
        if plan.write_probabilities
        else None
    )
    valid = np.empty(window.shape, dtype=bool)
    for strip in assemble_strips(window, plan.num_classes):
        rows = slice(strip.row - window.row, strip.row_stop - window.row)
        tiles, valid[rows] = gather_tiles(plan, strip, batches)
        labels[rows], strip_probabilities = stitch_chunk(
            plan.layout, strip, tiles, valid[rows], plan.class_ids, plan.write_probabilities
        )
        if probabilities is not None and strip_probabilities is not None:
            probabilities[:, rows] = strip_probabilities
    write_output_chunk(plan, window, "labels", labels[None])
    if probabilities is not None:
        write_output_chunk(plan, window, "probabilities", probabilities)
    valid_pixels = int(np.count_nonzero(valid))
    counted = labels.ravel() if valid_pixels == valid.size else labels[valid]
    counts = np.bincount(counted, minlength=256)
    summary = ChunkSummary(
        window=window,
        valid_pixels=valid_pixels,
        class_pixels={int(value): int(counts[value]) for value in np.flatnonzero(counts)},
    )
    write_summary(chunk_path(plan.work_dir, window, "summary"), summary)
    return summary


def write_output_chunk(
    plan: PredictPlan, window: PixelWindow, kind: str, data: NDArray[np.unsignedinteger[Any]]
) -> None:
    """Write a chunk of an output (labels, probabilities, instance ids) and its overviews."""
    grid = plan.source.grid
    for factor in overview_factors(grid.height, grid.width):
        level, decimated = decimate(data, window, grid, factor)
        if not level.is_empty:
            path = overview_chunk_path(plan.work_dir, window, kind, factor)
            write_chunk(path, grid.zoom_out(factor), level, np.ascontiguousarray(decimated))
    write_chunk(chunk_path(plan.work_dir, window, kind), grid, window, data)
