"""The forward task of a prediction run: one batch of tiles through the model.

:func:`forward_batch` reads and scales a batch of tiles (a fixed group of the
global tile order, :attr:`geoseg.predict.plan.PredictPlan.batches`), runs them
through the model and stores what stitching needs of each tile
(:mod:`geoseg.predict.stitching`): the labels of its solo window, where it
alone has weight, and its weighted probabilities over the bands it shares with
neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from geoseg.grid import PixelWindow
from geoseg.io.workdir import batch_path, tile_batch_writer
from geoseg.labels import LABEL_NODATA
from geoseg.predict.blending import labels_from_probabilities, quantize_probabilities, tile_weights
from geoseg.predict.inference import cached_model, forward_probabilities
from geoseg.predict.plan import PredictPlan, batch_parts
from geoseg.predict.preprocess import normalize, reflect_pad
from geoseg.predict.stitching import (
    TileBatch,
    TileParts,
    parts_places,
    parts_sizes,
    tile_parts,
    tile_regions,
)


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


def batch_probabilities(
    plan: PredictPlan, indexes: Sequence[int]
) -> tuple[NDArray[np.float32] | None, list[int | None], NDArray[np.bool_]]:
    """Read a batch of tiles and run those with a valid pixel through the model.

    Returns
    -------
    tuple
        The probabilities ``(active tiles, classes, tile, tile)`` (None when no
        tile has a valid pixel), each tile's row in them (None for tiles
        without any valid pixel: not run through the model), and the validity
        of every tile pixel ``(tiles, tile, tile)``.
    """
    inputs, valid = batch_inputs(plan, indexes)
    active = [position for position in range(len(indexes)) if valid[position].any()]
    rows: list[int | None] = [None] * len(indexes)
    for row, position in enumerate(active):
        rows[position] = row
        if row != position:  # compacted in place: no copy of the batch's inputs
            inputs[row] = inputs[position]
    if not active:
        return None, rows, valid
    return model_probabilities(plan, inputs[: len(active)]), rows, valid


def fill_parts(
    plan: PredictPlan,
    parts: TileParts,
    probabilities: NDArray[np.float32] | None,
    valid: NDArray[np.bool_],
) -> None:
    """Fill a tile's parts from its probabilities ``(classes, tile, tile)``.

    A tile without probabilities (no valid pixel) gets zero bands and nodata
    labels.
    """
    if probabilities is None:
        for _, band in parts.bands:
            band[...] = 0.0
        parts.solo_labels[...] = LABEL_NODATA
        if parts.solo_probabilities is not None:
            parts.solo_probabilities[...] = 0
        return
    keep_tile(plan, parts, probabilities, valid)


def compute_batch(plan: PredictPlan, indexes: Sequence[int]) -> TileBatch:
    """Run one batch of tiles through the model and keep what stitching needs.

    Per tile: the labels (and quantized probabilities) of its solo window,
    where no other tile has weight and the blend is the tile's own output,
    and its weighted probabilities over the bands it shares. Tiles without any
    valid pixel are not run through the model (zero bands, nodata labels).
    """
    probabilities, rows, valid = batch_probabilities(plan, indexes)
    band_values, solo_values = parts_sizes(
        plan.layout, indexes, plan.num_classes, plan.write_probabilities
    )
    batch = TileBatch(
        np.empty(band_values, dtype=np.float32), np.empty(solo_values, dtype=np.uint8), valid
    )
    for position, parts in enumerate(batch_parts(plan, indexes, batch)):
        row = rows[position]
        tile = None if probabilities is None or row is None else probabilities[row]
        fill_parts(plan, parts, tile, valid[position])
    return batch


def model_probabilities(plan: PredictPlan, inputs: NDArray[np.float32]) -> NDArray[np.float32]:
    """Class probabilities of scaled tiles through the plan's engine, device and precision."""
    if plan.engine == "onnxruntime":
        from geoseg.predict.onnx_runtime import cached_session, session_probabilities

        session = cached_session(plan.model, plan.precision)
        return session_probabilities(session, inputs, plan.model.device, plan.model.directory)
    loaded = cached_model(plan.model)
    return forward_probabilities(loaded, inputs, plan.model.device, plan.precision)


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

    The parts are computed and written a tile at a time, so the task holds
    one tile's parts besides the batch's probabilities, never the whole
    batch's (the bottom tile row of a scene off the tile lattice shares most
    of its rows with the row above, and its batches' parts are twice the
    usual). A batch file left by an earlier, interrupted run of the same work
    directory is reused.

    Returns
    -------
    Path
        The batch file.
    """
    path = batch_path(plan.work_dir, batch_number)
    if path.exists():
        return path
    probabilities, rows, valid = batch_probabilities(plan, indexes)
    layout, classes, with_probabilities = plan.layout, plan.num_classes, plan.write_probabilities
    band_values, solo_values = parts_sizes(layout, indexes, classes, with_probabilities)
    places = parts_places(layout, indexes, classes, with_probabilities)
    with tile_batch_writer(path, band_values, solo_values, len(indexes), layout.tile) as writer:
        for position, place in enumerate(places):
            tile_bands, tile_solo = parts_sizes(layout, [place.index], classes, with_probabilities)
            bands = np.empty(tile_bands, dtype=np.float32)
            solo = np.empty(tile_solo, dtype=np.uint8)
            (parts,) = tile_parts(layout, [place.index], classes, bands, solo, with_probabilities)
            row = rows[position]
            tile = None if probabilities is None or row is None else probabilities[row]
            fill_parts(plan, parts, tile, valid[position])
            if place.bands:
                writer.write_bands(place.bands[0][1], bands)
            writer.write_solo(place.labels_at, solo)
        writer.write_valid(valid)
    return path
