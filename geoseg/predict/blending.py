"""Blending overlapping tile outputs into one seamless probability map.

Each tile's class probabilities are multiplied by a weight window, summed over
the tiles covering a pixel, and divided by the sum of the weights there.

The window is separable (``row weight x column weight``). Along one axis, on
each side of the tile that is *not* on the scene border:

- a discarded margin of ``overlap // 4`` pixels gets weight 0: those pixels saw
  the convolutions' zero padding, the least reliable part of a tile, and a
  neighbouring tile always covers them with real context;
- a raised-cosine ramp from the floor ``WEIGHT_FLOOR`` to 1 spans the rest of
  the overlap (``overlap - 2 * margin`` pixels), so the ramps of two
  neighbours on the stride lattice are complementary and the transition from
  one tile to the next is smooth (no seam, no step);
- the tile centre is flat at 1.

Sides on the scene border get no margin and no ramp: nothing else covers them.
Because consecutive origins differ by at most ``tile - overlap``, the positive
parts of neighbouring windows always meet, so every pixel has a positive weight
sum; renormalising by it gives border pixels and pixels next to nodata full,
correct coverage. A model whose receptive field radius is at most the margin
is reproduced exactly (to float rounding) by tiling and stitching.

Tile contributions to a pixel are always summed in ascending global tile index
(:func:`blend_window` sorts them), which makes the result bit-identical however
the scene is chunked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from geoseg.grid import PixelWindow
from geoseg.predict.tiling import TileLayout

WEIGHT_FLOOR = 1e-3
"""Smallest weight inside a tile's kept area (the first pixel of a ramp is above it)."""


def discarded_margin(overlap: int) -> int:
    """Pixels at an interior tile edge that get weight 0."""
    return overlap // 4


def axis_weights(
    tile: int, overlap: int, start_on_border: bool, end_on_border: bool
) -> NDArray[np.float32]:
    """The 1-D weight window of one tile axis (length ``tile``).

    Parameters
    ----------
    tile
        Tile size.
    overlap
        Overlap between consecutive tiles.
    start_on_border, end_on_border
        Whether the first / last pixel of the axis lies on the scene border.
    """
    centres = np.arange(tile, dtype=np.float64) + 0.5
    weights = np.ones(tile, dtype=np.float64)
    if overlap == 0:
        return weights.astype(np.float32)
    margin = discarded_margin(overlap)
    ramp = overlap - 2 * margin
    for on_border, distance in ((start_on_border, centres), (end_on_border, tile - centres)):
        if on_border:
            continue
        position = np.clip((distance - margin) / ramp, 0.0, 1.0)
        side = WEIGHT_FLOOR + (1.0 - WEIGHT_FLOOR) * 0.5 * (1.0 - np.cos(math.pi * position))
        side[distance < margin] = 0.0
        weights *= side
    return weights.astype(np.float32)


@lru_cache(maxsize=64)
def _window(tile: int, overlap: int, sides: tuple[bool, bool, bool, bool]) -> NDArray[np.float32]:
    top, bottom, left, right = sides
    rows = axis_weights(tile, overlap, top, bottom)
    cols = axis_weights(tile, overlap, left, right)
    window = np.outer(rows, cols).astype(np.float32)
    window.setflags(write=False)
    return window


def tile_weights(layout: TileLayout, index: int) -> NDArray[np.float32]:
    """The 2-D weight window of tile ``index`` (read-only, ``tile`` x ``tile``)."""
    return _window(layout.tile, layout.overlap, layout.border_sides(index))


def weight_probabilities(
    layout: TileLayout,
    index: int,
    probabilities: NDArray[np.float32],
    out: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """Multiply one tile's probabilities ``(classes, tile, tile)`` by its weight window.

    ``out`` (as in numpy) receives the product, which may be ``probabilities``
    itself; by default a new array is returned.
    """
    return np.multiply(probabilities, tile_weights(layout, index)[None], out=out)


Pieces = Sequence[tuple[PixelWindow, NDArray[np.float32]]]
"""Parts of one tile's weighted probabilities: ``(scene window, (classes, h, w))`` pairs."""


def whole_tile(layout: TileLayout, index: int, weighted: NDArray[np.float32]) -> Pieces:
    """A tile's weighted probabilities ``(classes, tile, tile)`` as one piece."""
    return [(layout.window(index), weighted)]


def blend_window(
    layout: TileLayout,
    window: PixelWindow,
    contributions: Iterable[tuple[int, Pieces | None]],
    valid: NDArray[np.bool_],
    num_classes: int,
) -> NDArray[np.float32]:
    """Blend weighted tile outputs into the probabilities of ``window``.

    Parameters
    ----------
    layout
        The scene's tile grid.
    window
        The output window (inside the scene).
    contributions
        ``(tile index, pieces of its weighted probabilities)`` for every tile
        with a positive weight somewhere in ``window`` (whole tiles:
        :func:`whole_tile`; the stored bands of a tile:
        :class:`geoseg.predict.stitching.TileParts`); ``None`` for a tile without any
        valid pixel (skipped). The pieces must hold every pixel of ``window``
        where the tile's weight is positive. Summed in ascending tile index
        whatever the given order.
    valid
        Valid-pixel mask of ``window``; invalid pixels get probability 0.
    num_classes
        Number of classes.

    Returns
    -------
    numpy.ndarray
        ``(classes, height, width)`` float32 probabilities.

    Raises
    ------
    RuntimeError
        A valid pixel got no weight (a tile layout bug, never user input).
    """
    total = np.zeros((num_classes, window.height, window.width), dtype=np.float32)
    weight_sum = np.zeros(window.shape, dtype=np.float32)
    for index, pieces in sorted(contributions, key=lambda item: item[0]):
        if pieces is None:
            continue
        tile_window = layout.window(index)
        weights = tile_weights(layout, index)
        for piece_window, weighted in pieces:
            common = piece_window.intersection(window)
            if common.is_empty:
                continue
            rows, cols = common.shift(-window.row, -window.col).slices()
            piece_rows, piece_cols = common.shift(-piece_window.row, -piece_window.col).slices()
            tile_rows, tile_cols = common.shift(-tile_window.row, -tile_window.col).slices()
            total[:, rows, cols] += weighted[:, piece_rows, piece_cols]
            weight_sum[rows, cols] += weights[tile_rows, tile_cols]
    if np.any(valid & (weight_sum <= 0)):
        raise RuntimeError(f"valid pixels of {window} got no tile weight; tile layout bug")
    weight_sum[~valid] = 1.0
    np.divide(total, weight_sum[None], out=total)
    if not valid.all():
        total[:, ~valid] = 0.0
    return total


def labels_from_probabilities(
    probabilities: NDArray[np.float32],
    valid: NDArray[np.bool_],
    class_ids: list[int],
    nodata: int,
) -> NDArray[np.uint8]:
    """Class labels (``class_ids[argmax]``) as uint8, ``nodata`` where invalid."""
    # argmax over the class planes, one contiguous plane at a time (much faster than
    # np.argmax along a strided axis); strict ">" keeps the first maximum, as argmax does
    best = probabilities[0].copy()
    labels = np.full(best.shape, class_ids[0], dtype=np.uint8)
    higher = np.empty(best.shape, dtype=bool)
    for channel in range(1, probabilities.shape[0]):
        np.greater(probabilities[channel], best, out=higher)
        np.maximum(best, probabilities[channel], out=best)
        np.copyto(labels, np.uint8(class_ids[channel]), where=higher)
    np.copyto(labels, np.uint8(nodata), where=~valid)
    return labels


PROBABILITY_SCALE = 255
"""Probabilities are written as uint8 ``round(p * 255)``; invalid pixels are 0."""


def quantize_probabilities(
    probabilities: NDArray[np.float32], valid: NDArray[np.bool_]
) -> NDArray[np.uint8]:
    """Probabilities as uint8 ``round(p * 255)``; 0 where invalid.

    The label raster (nodata 255) marks the invalid pixels; every uint8 value
    is a probability here, so the probability raster has no nodata value.
    """
    scaled = np.rint(np.clip(probabilities, 0.0, 1.0) * PROBABILITY_SCALE).astype(np.uint8)
    scaled[:, ~valid] = 0
    return scaled
