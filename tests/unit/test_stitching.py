"""Solo windows and shared bands: stitching from them equals blending every pixel."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geoseg.grid import PixelWindow
from geoseg.io.workdir import TileBatchFile, write_tile_batch
from geoseg.predict.assemble import ASSEMBLE_STRIP_BYTES, assemble_strips, read_parts, stitch_chunk
from geoseg.predict.blending import (
    blend_window,
    labels_from_probabilities,
    quantize_probabilities,
    tile_weights,
    weight_probabilities,
    whole_tile,
)
from geoseg.predict.stitching import (
    TileParts,
    parts_places,
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


def kept_parts(
    layout: TileLayout,
    outputs: dict[int, np.ndarray],
    valid: np.ndarray,
    classes: int,
    with_probabilities: bool,
) -> tuple[np.ndarray, np.ndarray, list[TileParts]]:
    """Each tile's parts as a forward task keeps them: the flat arrays and the views."""
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
        rows, cols = part.solo.shift(-window.row, -window.col).slices()
        part.solo_labels[...] = labels_from_probabilities(
            outputs[part.index][:, rows, cols],
            tile_valid(layout, part.index, valid)[rows, cols],
            [1, 2, 3],
            255,
        )
        if part.solo_probabilities is not None:
            part.solo_probabilities[...] = quantize_probabilities(
                outputs[part.index][:, rows, cols],
                tile_valid(layout, part.index, valid)[rows, cols],
            )
    return bands, solo, parts


def random_outputs(
    layout: TileLayout, classes: int, seed: int
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """A random validity of the scene's pixels (95% valid) and random outputs of every tile."""
    generator = np.random.default_rng(seed)
    valid = generator.random((layout.height, layout.width)) > 0.05
    outputs = {
        index: generator.random((classes, layout.tile, layout.tile), dtype=np.float32)
        for index in range(layout.count)
    }
    return valid, outputs


def tile_valid(layout: TileLayout, index: int, valid: np.ndarray) -> np.ndarray:
    """The validity of the pixels of tile ``index`` (False past the scene)."""
    window = layout.window(index)
    inside = window.clip(layout.height, layout.width)
    result = np.zeros((layout.tile, layout.tile), dtype=bool)
    result[inside.shift(-window.row, -window.col).slices()] = valid[inside.slices()]
    return result


@settings(max_examples=40, deadline=None)
@given(layouts, st.integers(5, 150), st.integers(0, 10_000), st.booleans())
def test_stitching_from_parts_equals_blending_every_pixel(
    geometry: tuple[int, int, int, int], chunk: int, seed: int, with_probabilities: bool
) -> None:
    layout = make_layout(*geometry)
    classes = 3
    valid, outputs = random_outputs(layout, classes, seed)
    scene = PixelWindow(0, 0, layout.height, layout.width)
    whole = [
        (i, whole_tile(layout, i, weight_probabilities(layout, i, p))) for i, p in outputs.items()
    ]
    blended = blend_window(layout, scene, whole, valid, classes)
    expected = labels_from_probabilities(blended, valid, [1, 2, 3], 255)
    *_, parts = kept_parts(layout, outputs, valid, classes, with_probabilities)
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


@settings(max_examples=30, deadline=None)
@given(layouts, st.integers(1, 60), st.integers(0, 10_000), st.booleans())
def test_parts_read_back_by_rows_from_a_batch_file_stitch_the_same(
    geometry: tuple[int, int, int, int], strip: int, seed: int, with_probabilities: bool
) -> None:
    layout = make_layout(*geometry)
    classes = 3
    valid, outputs = random_outputs(layout, classes, seed)
    bands, solo, parts = kept_parts(layout, outputs, valid, classes, with_probabilities)
    by_index = {part.index: part for part in parts}
    scene = PixelWindow(0, 0, layout.height, layout.width)
    places = parts_places(layout, list(range(layout.count)), classes, with_probabilities)
    tiles_valid = np.stack([tile_valid(layout, i, valid) for i in range(layout.count)])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "batch"
        write_tile_batch(path, bands, solo, tiles_valid)
        with TileBatchFile(path, layout.tile) as batch:
            for window in scene.chunks(strip):  # rows read for any strip of the scene
                touching = tiles_touching(layout, window)
                read = {i: read_parts(batch, places[i], window, classes) for i in touching}
                for index, part in read.items():  # only the rows the strip needs
                    for piece, values in part.bands:
                        assert window.row <= piece.row and piece.row_stop <= window.row_stop
                        assert values.shape == (classes, *piece.shape)
                    assert part.solo.height <= window.height
                    assert np.array_equal(
                        batch.read_valid(index, slice(0, layout.tile)), tiles_valid[index]
                    )
                expected = stitch_chunk(
                    layout,
                    window,
                    {i: by_index[i] for i in touching},
                    valid[window.slices()],
                    [1, 2, 3],
                    with_probabilities,
                )
                stitched = stitch_chunk(
                    layout, window, read, valid[window.slices()], [1, 2, 3], with_probabilities
                )
                assert np.array_equal(stitched[0], expected[0])
                if with_probabilities:
                    assert np.array_equal(stitched[1], expected[1])


@given(st.integers(1, 5000), st.integers(1, 5000), st.integers(1, 40))
def test_assemble_strips_tile_the_window_in_full_width_rows_of_bounded_size(
    height: int, width: int, classes: int
) -> None:
    window = PixelWindow(17, 3, height, width)
    strips = assemble_strips(window, classes)
    assert strips[0].row == window.row and strips[-1].row_stop == window.row_stop
    for above, below in itertools.pairwise(strips):
        assert above.row_stop == below.row
    for strip in strips:
        assert (strip.col, strip.width) == (window.col, window.width)
        assert strip.height >= 1
        planes = 4 * classes * strip.height * width
        assert planes <= ASSEMBLE_STRIP_BYTES or strip.height <= 16
