"""The two task bodies of a prediction run, and the plan they share.

A :class:`PredictPlan` is the normalised, picklable description of a run: the
source, which of its bands feed the model, the model, the tile layout, the
scaling and where the work directory is. :func:`forward_batch` runs one batch
of tiles (a fixed group of the global tile order) and stores what stitching
needs of each tile (:mod:`geoseg.predict.stitching`): the labels of its solo window,
where it alone has weight, and its weighted probabilities over the bands it
shares with neighbours; :func:`assemble_chunk` pastes the solo labels of the
tiles touching one output chunk, blends the shared bands in canonical order
and writes the chunk's label (and probability) GeoTIFFs. ``workflows/predict.py``
wires these into Dask.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from geoseg.grid import PixelWindow
from geoseg.io.checkpoint import read_card
from geoseg.io.cog import write_chunk
from geoseg.io.workdir import (
    ChunkSummary,
    batch_path,
    chunk_path,
    overview_chunk_path,
    read_tile_batch,
    write_summary,
    write_tile_batch,
)
from geoseg.labels import LABEL_NODATA
from geoseg.models.card import InputScaling
from geoseg.predict.blending import (
    blend_window,
    labels_from_probabilities,
    quantize_probabilities,
    tile_weights,
)
from geoseg.predict.inference import (
    DeviceSupport,
    ModelKey,
    Precision,
    cached_model,
    forward_probabilities,
    model_key,
    select_device,
    select_precision,
)
from geoseg.predict.overviews import decimate, overview_factors, overview_grid
from geoseg.predict.preprocess import (
    SceneStatistics,
    normalize,
    reflect_pad,
    resolve_band_indexes,
    sample_windows,
    scene_statistics,
)
from geoseg.predict.sources import RasterSource
from geoseg.predict.stitching import (
    TileParts,
    parts_sizes,
    shared_windows,
    tile_parts,
    tile_regions,
)
from geoseg.predict.tiling import TileLayout, make_layout, tiles_touching

WORK_FORMAT = 3
"""Version of the work-directory layout; part of its hash."""


@dataclass(frozen=True)
class PredictPlan:
    """Everything a task needs, validated once on the client."""

    source: RasterSource
    band_positions: tuple[int, ...]
    model: ModelKey
    layout: TileLayout
    scaling: InputScaling
    statistics: SceneStatistics | None
    precision: Precision
    class_ids: tuple[int, ...]
    work_dir: Path
    write_probabilities: bool

    @property
    def num_classes(self) -> int:
        """Number of model output channels."""
        return len(self.class_ids)


def batch_inputs(
    plan: PredictPlan, indexes: Sequence[int]
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Scaled model inputs ``(tiles, bands, tile, tile)`` and validity of several tiles.

    Tiles are in the order given. Tiles of the same tile row are read in one
    window (their union), which decodes each raster block once, and scaled
    straight into their place in the batch; values are the same as reading
    each tile on its own (scaling is per pixel, reflection padding per tile).
    """
    layout = plan.layout
    inputs = np.empty(
        (len(indexes), len(plan.band_positions), layout.tile, layout.tile), dtype=np.float32
    )
    valid = np.empty((len(indexes), layout.tile, layout.tile), dtype=bool)
    rows: dict[int, list[int]] = {}
    for position, index in enumerate(indexes):
        rows.setdefault(index // layout.columns, []).append(position)
    for positions in rows.values():
        windows = [layout.window(indexes[position]) for position in positions]
        first = min(window.col for window in windows)
        union = PixelWindow(
            windows[0].row, first, layout.tile, max(w.col_stop for w in windows) - first
        )
        data, union_valid = plan.source.read(union)
        for position, window in zip(positions, windows, strict=True):
            cols = slice(window.col - first, window.col_stop - first)
            valid[position] = union_valid[:, cols]
            normalize(
                data,
                union_valid,
                plan.scaling,
                plan.statistics,
                bands=plan.band_positions,
                cols=cols,
                out=inputs[position],
            )
            inside = window.clip(layout.height, layout.width).shift(-window.row, -window.col)
            if inside.shape != window.shape:  # a tile past the bottom or right border
                inputs[position], valid[position] = reflect_pad(
                    inputs[position], valid[position], inside
                )
    return inputs, valid


@dataclass(frozen=True)
class TileBatch:
    """What a forward task keeps of a batch of tiles (see :mod:`geoseg.predict.stitching`).

    ``bands`` (float32) and ``solo`` (uint8) are flat arrays that
    :func:`geoseg.predict.stitching.tile_parts` cuts into each tile's parts; ``valid``
    is the validity of every tile pixel ``(tiles, tile, tile)``.
    """

    bands: NDArray[np.float32]
    solo: NDArray[np.uint8]
    valid: NDArray[np.bool_]


def batch_parts(plan: PredictPlan, indexes: Sequence[int], batch: TileBatch) -> list[TileParts]:
    """The parts of each tile of ``batch`` (views into its arrays)."""
    return tile_parts(
        plan.layout, indexes, plan.num_classes, batch.bands, batch.solo, plan.write_probabilities
    )


def compute_batch(plan: PredictPlan, indexes: Sequence[int]) -> TileBatch:
    """Run one batch of tiles through the model and keep what stitching needs.

    Per tile: the labels (and quantized probabilities) of its solo window,
    where no other tile has weight and the blend is the tile's own output,
    and its weighted probabilities over the bands it shares. Tiles without any
    valid pixel are not run through the model (zero bands, nodata labels).
    """
    layout = plan.layout
    inputs, valid = batch_inputs(plan, indexes)
    band_values, solo_values = parts_sizes(
        layout, indexes, plan.num_classes, plan.write_probabilities
    )
    # every value is set below (tiles without valid pixels get zero bands)
    batch = TileBatch(
        np.empty(band_values, dtype=np.float32), np.zeros(solo_values, dtype=np.uint8), valid
    )
    active = [position for position in range(len(indexes)) if valid[position].any()]
    probabilities = None
    if active:
        loaded = cached_model(plan.model)
        if len(active) < len(indexes):
            inputs = inputs[active]
        probabilities = forward_probabilities(loaded, inputs, plan.model.device, plan.precision)
    rows = {position: row for row, position in enumerate(active)}
    for position, parts in enumerate(batch_parts(plan, indexes, batch)):
        if position not in rows or probabilities is None:
            for _, band in parts.bands:
                band[...] = 0.0
            parts.solo_labels[...] = LABEL_NODATA
            continue
        keep_tile(plan, parts, probabilities[rows[position]], valid[position])
    return batch


def keep_tile(
    plan: PredictPlan,
    parts: TileParts,
    probabilities: NDArray[np.float32],
    valid: NDArray[np.bool_],
) -> None:
    """Fill a tile's parts from its probabilities ``(classes, tile, tile)``."""
    tile_window = plan.layout.window(parts.index)
    weights = tile_weights(plan.layout, parts.index)
    for band, out in parts.bands:
        rows, cols = band.shift(-tile_window.row, -tile_window.col).slices()
        np.multiply(probabilities[:, rows, cols], weights[None, rows, cols], out=out)
    solo = tile_regions(plan.layout, parts.index).solo
    if solo.is_empty:
        return
    rows, cols = solo.shift(-tile_window.row, -tile_window.col).slices()
    kept = probabilities[:, rows, cols]
    parts.solo_labels[...] = labels_from_probabilities(
        kept, valid[rows, cols], list(plan.class_ids), LABEL_NODATA
    )
    if parts.solo_probabilities is not None:
        parts.solo_probabilities[...] = quantize_probabilities(kept, valid[rows, cols])


def forward_batch(plan: PredictPlan, batch_number: int, indexes: Sequence[int]) -> Path:
    """:func:`compute_batch` stored in the work directory (for batches kept a while).

    A batch file left by an earlier, interrupted run of the same work
    directory is reused.

    Returns
    -------
    Path
        The batch file.
    """
    path = batch_path(plan.work_dir, batch_number)
    if not path.exists():
        batch = compute_batch(plan, indexes)
        write_tile_batch(path, batch.bands, batch.solo, batch.valid)
    return path


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
    layout = plan.layout
    touching = set(tiles_touching(layout, window))
    kept: dict[int, TileParts] = {}
    valid = np.zeros(window.shape, dtype=bool)
    for indexes, stored in batches:
        batch = (
            stored
            if isinstance(stored, TileBatch)
            else TileBatch(*read_tile_batch(stored, layout.tile))
        )
        for position, parts in enumerate(batch_parts(plan, indexes, batch)):
            if parts.index not in touching:
                continue
            kept[parts.index] = parts
            # validity is per pixel, so every tile over a pixel agrees on it
            tile_window = layout.window(parts.index)
            common = tile_window.intersection(window)
            rows, cols = common.shift(-window.row, -window.col).slices()
            tile_rows, tile_cols = common.shift(-tile_window.row, -tile_window.col).slices()
            valid[rows, cols] = batch.valid[position, tile_rows, tile_cols]
    labels = np.empty(window.shape, dtype=np.uint8)
    quantized = np.empty(
        (plan.num_classes if plan.write_probabilities else 0, *window.shape), np.uint8
    )
    regions = {index: tile_regions(layout, index) for index in kept}
    for index, parts in kept.items():  # where one tile is alone: its own results
        solo = regions[index].solo
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
            for index, parts in kept.items()
            if not regions[index].positive.intersection(shared).is_empty
        ]
        for strip in blend_strips(shared, plan.num_classes):
            rows, cols = strip.shift(-window.row, -window.col).slices()
            probabilities = blend_window(
                layout, strip, contributions, valid[rows, cols], plan.num_classes
            )
            labels[rows, cols] = labels_from_probabilities(
                probabilities, valid[rows, cols], list(plan.class_ids), LABEL_NODATA
            )
            if plan.write_probabilities:
                quantized[:, rows, cols] = quantize_probabilities(probabilities, valid[rows, cols])
    outputs = [("labels", labels[None])]
    if plan.write_probabilities:
        outputs.append(("probabilities", quantized))
    for kind, data in outputs:
        write_output_chunk(plan, window, kind, data)
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
    plan: PredictPlan, window: PixelWindow, kind: str, data: NDArray[np.uint8]
) -> None:
    """Write a chunk of an output and its share of every overview level."""
    grid = plan.source.grid
    for factor in overview_factors(grid.height, grid.width):
        level, decimated = decimate(data, window, grid, factor)
        if not level.is_empty:
            path = overview_chunk_path(plan.work_dir, window, kind, factor)
            write_chunk(path, overview_grid(grid, factor), level, np.ascontiguousarray(decimated))
    write_chunk(chunk_path(plan.work_dir, window, kind), grid, window, data)


def make_plan(
    source: RasterSource,
    model: str | Path,
    *,
    tile: int | None,
    overlap: int | None,
    device: str,
    precision: str,
    work_root: Path,
    write_probabilities: bool,
    batch_size: int,
    chunk_size: int,
    support: DeviceSupport | None = None,
) -> PredictPlan:
    """Validate a run's inputs once and describe it as a :class:`PredictPlan`.

    Resolves the device and precision for ``support`` (the hardware that runs
    the model: default this process's; see
    :func:`workflows.cluster.inference_placement`), the model (by name or directory), the
    model's bands among the source's, the tile geometry (default: the card's),
    and for ``scene_percentile`` scaling the scene's statistics from a fixed
    sample lattice. The work directory is ``work_root`` / a hash of everything
    that determines the outputs, so a rerun with the same inputs resumes.

    Raises
    ------
    GeosegError
        Any invalid input, with a message naming it (band mismatch, bad tile
        geometry, unknown device, all-nodata scene...).
    """
    resolved_device = select_device(device, support)
    key = model_key(model, resolved_device)
    card = read_card(key.directory)
    resolved_precision = select_precision(
        precision, resolved_device, card.cpu_bf16_agreement, support
    )
    indexes = resolve_band_indexes(source.label, card.band_names, source.band_names)
    positions = tuple(index - 1 for index in indexes)
    tile_size = card.tile_size if tile is None else tile
    tile_overlap = card.overlap if overlap is None else overlap
    grid = source.grid
    layout = make_layout(grid.height, grid.width, tile_size, tile_overlap)
    statistics = None
    if card.scaling.method == "scene_percentile":
        samples = []
        for window in sample_windows(grid):
            data, valid = source.read(window)
            samples.append((data[list(positions)], valid))
        statistics = scene_statistics(source.label, samples, card.scaling.percentiles)
    description = {
        "source": source.identity,
        "model": key.directory,
        "weights_sha256": key.weights_sha256,
        "device": resolved_device,
        "precision": resolved_precision,
        "bands": list(positions),
        "tile": tile_size,
        "overlap": tile_overlap,
        "batch_size": batch_size,
        "chunk_size": chunk_size,
        "probabilities": write_probabilities,
        "statistics": None if statistics is None else [statistics.low, statistics.high],
        "format": WORK_FORMAT,
    }
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()
    return PredictPlan(
        source=source,
        band_positions=positions,
        model=key,
        layout=layout,
        scaling=card.scaling,
        statistics=statistics,
        precision=resolved_precision,
        class_ids=tuple(card.class_ids),
        work_dir=work_root / f".geoseg-work-{digest[:20]}",
        write_probabilities=write_probabilities,
    )
