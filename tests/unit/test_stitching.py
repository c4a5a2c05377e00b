"""Solo windows and shared bands: stitching from them equals blending every pixel."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geoseg.grid import PixelWindow
from geoseg.predict.assemble import stitch_chunk
from geoseg.predict.blending import (
    blend_window,
    labels_from_probabilities,
    quantize_probabilities,
    tile_weights,
    weight_probabilities,
    whole_tile,
)
from geoseg.predict.stitching import (
    parts_sizes,
    shared_windows,
    tile_parts,
    tile_regions,
)
from geoseg.predict.tiling import TileLayout, make_layout, tiles_touching

layouts = st.integers(8, 120).flatmap(
    lambda tile: st.tuples(
        st.integers(1, 400), st.integers(1, 400), st.just(tile), st.integers(0, (tile - 1) // 2)
    )
)


def coverage(layout: TileLayout) -> np.ndarray:
    """How many tiles have a positive weight at each pixel."""
    count = np.zeros((layout.height, layout.width), dtype=np.int64)
    for index in range(layout.count):
        window = layout.window(index)
        inside = window.clip(layout.height, layout.width)
        weights = tile_weights(layout, index)[inside.shift(-window.row, -window.col).slices()]
        count[inside.slices()] += weights > 0
    return count


@settings(max_examples=80, deadline=None)
@given(layouts)
def test_solo_and_shared_windows_partition_the_scene(
    geometry: tuple[int, int, int, int],
) -> None:
    layout = make_layout(*geometry)
    covered = coverage(layout)
    seen = np.zeros_like(covered)
    for index in range(layout.count):
        regions = tile_regions(layout, index)
        window = layout.window(index)
        solo = regions.solo
        seen[solo.slices()] += 1
        # alone there, at weight exactly 1: the blend is the tile's own output, bit for bit
        assert (covered[solo.slices()] == 1).all()
        weights = tile_weights(layout, index)[solo.shift(-window.row, -window.col).slices()]
        assert (weights == 1.0).all()
        # the bands and the solo window make up the positive window
        area = sum(band.height * band.width for band in (*regions.bands, solo))
        assert area == regions.positive.height * regions.positive.width
    for window in shared_windows(layout, PixelWindow(0, 0, layout.height, layout.width)):
        seen[window.slices()] += 1
        assert (covered[window.slices()] >= 2).all()
    assert (seen == 1).all()


@settings(max_examples=40, deadline=None)
@given(layouts, st.integers(5, 150), st.integers(0, 10_000), st.booleans())
def test_stitching_from_parts_equals_blending_every_pixel(
    geometry: tuple[int, int, int, int], chunk: int, seed: int, with_probabilities: bool
) -> None:
    layout = make_layout(*geometry)
    generator = np.random.default_rng(seed)
    classes = 3
    valid = generator.random((layout.height, layout.width)) > 0.05
    outputs = {
        index: generator.random((classes, layout.tile, layout.tile), dtype=np.float32)
        for index in range(layout.count)
    }
    scene = PixelWindow(0, 0, layout.height, layout.width)
    whole = [
        (i, whole_tile(layout, i, weight_probabilities(layout, i, p))) for i, p in outputs.items()
    ]
    blended = blend_window(layout, scene, whole, valid, classes)
    expected = labels_from_probabilities(blended, valid, [1, 2, 3], 255)
    # keep each tile's parts as a forward task does
    indexes = list(range(layout.count))
    band_values, solo_values = parts_sizes(layout, indexes, classes, with_probabilities)
    bands = np.zeros(band_values, dtype=np.float32)
    solo = np.zeros(solo_values, dtype=np.uint8)
    parts = tile_parts(layout, indexes, classes, bands, solo, with_probabilities)
    for part in parts:
        window = layout.window(part.index)
        weighted = weight_probabilities(layout, part.index, outputs[part.index])
        for band, out in part.bands:
            out[...] = weighted[(slice(None), *band.shift(-window.row, -window.col).slices())]
        regions = tile_regions(layout, part.index)
        rows, cols = regions.solo.shift(-window.row, -window.col).slices()
        tile_valid = np.zeros((layout.tile, layout.tile), dtype=bool)
        inside = window.clip(layout.height, layout.width)
        tile_valid[inside.shift(-window.row, -window.col).slices()] = valid[inside.slices()]
        part.solo_labels[...] = labels_from_probabilities(
            outputs[part.index][:, rows, cols], tile_valid[rows, cols], [1, 2, 3], 255
        )
        if part.solo_probabilities is not None:
            part.solo_probabilities[...] = quantize_probabilities(
                outputs[part.index][:, rows, cols], tile_valid[rows, cols]
            )
    # stitch chunk by chunk from the parts only, with the shipped stitch
    by_index = {part.index: part for part in parts}
    stitched = np.full((layout.height, layout.width), 7, dtype=np.uint8)
    quantized = np.full((classes, layout.height, layout.width), 7, dtype=np.uint8)
    for chunk_window in scene.chunks(chunk):
        touching = {index: by_index[index] for index in tiles_touching(layout, chunk_window)}
        labels, probabilities = stitch_chunk(
            layout,
            chunk_window,
            touching,
            valid[chunk_window.slices()],
            [1, 2, 3],
            with_probabilities,
        )
        stitched[chunk_window.slices()] = labels
        assert (probabilities is not None) == with_probabilities
        if probabilities is not None:
            quantized[(slice(None), *chunk_window.slices())] = probabilities
    assert np.array_equal(stitched, expected)
    if with_probabilities:
        assert np.array_equal(quantized, quantize_probabilities(blended, valid))


def test_an_interior_tile_of_the_default_geometry_keeps_a_third_of_its_pixels() -> None:
    layout = make_layout(2000, 2000, 512, 64)
    regions = tile_regions(layout, layout.columns + 1)  # second row, second column
    assert regions.solo == PixelWindow(448 + 48, 448 + 48, 416, 416)
    band_pixels = sum(band.height * band.width for band in regions.bands)
    assert band_pixels == 480 * 480 - 416 * 416
    assert len(regions.bands) == 4
