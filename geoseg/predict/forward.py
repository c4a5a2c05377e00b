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
from geoseg.io.workdir import batch_path, write_tile_batch
from geoseg.labels import LABEL_NODATA
from geoseg.predict.blending import labels_from_probabilities, quantize_probabilities, tile_weights
from geoseg.predict.inference import cached_model, forward_probabilities
from geoseg.predict.plan import PredictPlan, batch_parts
from geoseg.predict.preprocess import normalize, reflect_pad
from geoseg.predict.stitching import TileBatch, TileParts, parts_sizes, tile_regions


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
        if len(active) < len(indexes):
            inputs = inputs[active]
        probabilities = model_probabilities(plan, inputs)
    rows = {position: row for row, position in enumerate(active)}
    for position, parts in enumerate(batch_parts(plan, indexes, batch)):
        if position not in rows or probabilities is None:
            for _, band in parts.bands:
                band[...] = 0.0
            parts.solo_labels[...] = LABEL_NODATA
            continue
        keep_tile(plan, parts, probabilities[rows[position]], valid[position])
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
