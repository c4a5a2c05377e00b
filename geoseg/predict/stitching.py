"""Which pixels a tile covers alone, and which it shares with its neighbours.

Blending (:mod:`geoseg.predict.blending`) sums every tile's weighted probabilities and
divides by the weight sum. Most of a tile, though, is covered by no other tile
with a positive weight: its *solo* rectangle, where the blended value is the
tile's own probability (its weight is exactly 1 there: the rectangle lies in the
flat top of the window, so ``w * p / w == p`` bit for bit). Only the *bands*
around it (the rest of the tile's positive-weight rectangle) are shared with
neighbours and need blending. With the default 512 px tiles and 64 px overlap
an interior tile's solo rectangle is 416 x 416 px (66% of the tile) and its
bands 22%; the discarded margins (weight 0) are the rest.

So a forward task keeps, per tile, the labels (and quantized probabilities) of
its solo rectangle and the weighted probabilities of its four bands (top and
bottom over the full positive width, left and right beside the solo
rectangle); a chunk pastes the solo labels and blends only the shared
rectangles (:func:`shared_windows`). The stitched result is identical to
blending every pixel.

Along one axis, tile ``i`` has positive weight on ``[positive_start,
positive_stop)`` (its origin plus the discarded margin on sides not on the
scene border, clipped to the scene) and is alone on ``[solo_start, solo_stop)``:
from where tile ``i - 1``'s positive span stops to where tile ``i + 1``'s
starts. Tiles further apart never overlap (``2 * overlap < tile``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from geoseg.grid import PixelWindow
from geoseg.predict.blending import discarded_margin
from geoseg.predict.tiling import TileLayout


@dataclass(frozen=True, slots=True)
class AxisSpan:
    """One tile's spans along one axis, in scene coordinates (``start <= stop``)."""

    positive_start: int
    solo_start: int
    solo_stop: int
    positive_stop: int


@lru_cache(maxsize=256)
def axis_spans(
    origins: tuple[int, ...], tile: int, overlap: int, length: int
) -> tuple[AxisSpan, ...]:
    """The positive and solo spans of every tile along an axis of ``length`` pixels."""
    margin = discarded_margin(overlap)
    positive = []
    for origin in origins:
        start = origin if origin <= 0 else origin + margin
        stop = origin + tile if origin + tile >= length else origin + tile - margin
        positive.append((max(start, 0), min(stop, length)))
    spans = []
    for index, (start, stop) in enumerate(positive):
        solo_start = max(start, positive[index - 1][1]) if index > 0 else start
        solo_stop = min(stop, positive[index + 1][0]) if index + 1 < len(positive) else stop
        solo_start = min(solo_start, stop)
        spans.append(AxisSpan(start, solo_start, max(solo_start, solo_stop), stop))
    return tuple(spans)


@dataclass(frozen=True, slots=True)
class TileRegions:
    """Scene windows of one tile: where its weight is positive, and where it is alone."""

    positive: PixelWindow
    solo: PixelWindow
    bands: tuple[PixelWindow, ...]
    """The positive window minus the solo one: top, bottom, left, right (empty ones left out)."""


def _window(rows: tuple[int, int], cols: tuple[int, int]) -> PixelWindow:
    return PixelWindow(rows[0], cols[0], rows[1] - rows[0], cols[1] - cols[0])


@lru_cache(maxsize=4096)
def tile_regions(layout: TileLayout, index: int) -> TileRegions:
    """The positive, solo and band windows of tile ``index`` (scene coordinates)."""
    tile_row, tile_col = divmod(index, layout.columns)
    rows = axis_spans(layout.row_origins, layout.tile, layout.overlap, layout.height)[tile_row]
    cols = axis_spans(layout.col_origins, layout.tile, layout.overlap, layout.width)[tile_col]
    positive_cols = (cols.positive_start, cols.positive_stop)
    solo_rows = (rows.solo_start, rows.solo_stop)
    bands = (
        _window((rows.positive_start, rows.solo_start), positive_cols),
        _window((rows.solo_stop, rows.positive_stop), positive_cols),
        _window(solo_rows, (cols.positive_start, cols.solo_start)),
        _window(solo_rows, (cols.solo_stop, cols.positive_stop)),
    )
    return TileRegions(
        positive=_window((rows.positive_start, rows.positive_stop), positive_cols),
        solo=_window(solo_rows, (cols.solo_start, cols.solo_stop)),
        bands=tuple(band for band in bands if not band.is_empty),
    )


def _shared_intervals(spans: tuple[AxisSpan, ...], start: int, stop: int) -> list[tuple[int, int]]:
    """Parts of ``[start, stop)`` outside every solo span (covered by two tiles or more)."""
    intervals = []
    position = start
    for span in spans:
        if span.solo_stop <= span.solo_start or span.solo_stop <= position:
            continue
        if span.solo_start >= stop:
            break
        if span.solo_start > position:
            intervals.append((position, span.solo_start))
        position = max(position, span.solo_stop)
    if position < stop:
        intervals.append((position, stop))
    return intervals


def _solo_intervals(spans: tuple[AxisSpan, ...], start: int, stop: int) -> list[tuple[int, int]]:
    clipped = [(max(s.solo_start, start), min(s.solo_stop, stop)) for s in spans]
    return [(low, high) for low, high in clipped if low < high]


def shared_windows(layout: TileLayout, window: PixelWindow) -> list[PixelWindow]:
    """Disjoint windows covering the pixels of ``window`` that no tile covers alone.

    Full-width windows over the shared rows, then, within each tile row's solo
    rows, windows over the shared columns.
    """
    row_spans = axis_spans(layout.row_origins, layout.tile, layout.overlap, layout.height)
    col_spans = axis_spans(layout.col_origins, layout.tile, layout.overlap, layout.width)
    columns = (window.col, window.col_stop)
    windows = [
        _window(rows, columns) for rows in _shared_intervals(row_spans, window.row, window.row_stop)
    ]
    shared_cols = _shared_intervals(col_spans, window.col, window.col_stop)
    for rows in _solo_intervals(row_spans, window.row, window.row_stop):
        windows.extend(_window(rows, cols) for cols in shared_cols)
    return windows


@dataclass(frozen=True)
class TileParts:
    """What is kept of one tile's output (or of its rows in a window): bands and solo results.

    ``bands`` pairs each band window (scene coordinates) with the weighted
    probabilities there, ``(classes, h, w)`` float32; ``solo_labels`` holds the
    class labels of the window ``solo`` (nodata where the input is), and
    ``solo_probabilities`` its quantized probabilities ``(classes, h, w)``
    when the run writes them. ``solo`` is the tile's solo window, or the rows
    of it that were read (:func:`geoseg.predict.assemble.read_parts`).
    """

    index: int
    bands: tuple[tuple[PixelWindow, NDArray[np.float32]], ...]
    solo_labels: NDArray[np.uint8]
    solo_probabilities: NDArray[np.uint8] | None
    solo: PixelWindow


@dataclass(frozen=True, slots=True)
class PartsPlace:
    """Where one tile's parts lie in its batch's flat arrays (see :func:`parts_places`).

    ``bands`` pairs each band window with the offset of its first value in the
    float32 array (``(classes, h, w)`` from there); the solo labels of the
    window ``solo`` start at ``labels_at`` in the uint8 array, its quantized
    probabilities (``(classes, h, w)``) at ``probabilities_at``, None when the
    run does not keep them.
    """

    index: int
    bands: tuple[tuple[PixelWindow, int], ...]
    solo: PixelWindow
    labels_at: int
    probabilities_at: int | None


@dataclass(frozen=True)
class TileBatch:
    """What a forward task keeps of a batch of tiles, as stored in the work directory.

    ``bands`` (float32) and ``solo`` (uint8) are flat arrays that
    :func:`tile_parts` cuts into each tile's parts; ``valid`` is the validity
    of every tile pixel ``(tiles, tile, tile)``.
    """

    bands: NDArray[np.float32]
    solo: NDArray[np.uint8]
    valid: NDArray[np.bool_]


def parts_sizes(
    layout: TileLayout, indexes: Sequence[int], num_classes: int, with_probabilities: bool
) -> tuple[int, int]:
    """Lengths of the flat float32 (bands) and uint8 (solo) arrays of a batch's tiles."""
    band_values = solo_values = 0
    for index in indexes:
        regions = tile_regions(layout, index)
        band_values += num_classes * sum(band.height * band.width for band in regions.bands)
        solo_pixels = regions.solo.height * regions.solo.width
        solo_values += solo_pixels * (1 + (num_classes if with_probabilities else 0))
    return band_values, solo_values


def parts_places(
    layout: TileLayout, indexes: Sequence[int], num_classes: int, with_probabilities: bool
) -> list[PartsPlace]:
    """Per tile of a batch, where its parts lie in the batch's flat arrays.

    Tiles follow ``indexes``; within a tile the bands come in
    :attr:`TileRegions.bands` order, then the solo labels, then the solo
    probabilities.
    """
    places = []
    band_at = solo_at = 0
    for index in indexes:
        regions = tile_regions(layout, index)
        bands = []
        for band in regions.bands:
            bands.append((band, band_at))
            band_at += num_classes * band.height * band.width
        pixels = regions.solo.height * regions.solo.width
        labels_at, solo_at = solo_at, solo_at + pixels
        probabilities_at = None
        if with_probabilities:
            probabilities_at, solo_at = solo_at, solo_at + num_classes * pixels
        places.append(PartsPlace(index, tuple(bands), regions.solo, labels_at, probabilities_at))
    return places


def tile_parts(
    layout: TileLayout,
    indexes: Sequence[int],
    num_classes: int,
    bands: NDArray[np.float32],
    solo: NDArray[np.uint8],
    with_probabilities: bool,
) -> list[TileParts]:
    """Per tile of a batch, views into its flat arrays (for writing or reading).

    The arrays are laid out as :func:`parts_places` says.
    """
    parts = []
    for place in parts_places(layout, indexes, num_classes, with_probabilities):
        views = tuple(
            (
                band,
                bands[at : at + num_classes * band.height * band.width].reshape(
                    num_classes, *band.shape
                ),
            )
            for band, at in place.bands
        )
        pixels = place.solo.height * place.solo.width
        labels = solo[place.labels_at : place.labels_at + pixels].reshape(place.solo.shape)
        probabilities = None
        if place.probabilities_at is not None:
            at = place.probabilities_at
            probabilities = solo[at : at + num_classes * pixels].reshape(
                num_classes, *place.solo.shape
            )
        parts.append(TileParts(place.index, views, labels, probabilities, place.solo))
    return parts
