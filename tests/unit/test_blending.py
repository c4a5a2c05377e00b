from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geoseg.grid import PixelWindow
from geoseg.predict.blending import (
    WEIGHT_FLOOR,
    Pieces,
    axis_weights,
    blend_window,
    discarded_margin,
    labels_from_probabilities,
    quantize_probabilities,
    tile_weights,
    weight_probabilities,
    whole_tile,
)
from geoseg.predict.tiling import make_layout, tiles_touching

tile_and_overlap = st.integers(min_value=8, max_value=300).flatmap(
    lambda tile: st.tuples(st.just(tile), st.integers(min_value=0, max_value=(tile - 1) // 2))
)


def test_weights_are_flat_in_the_centre_zero_in_the_margin_and_positive_elsewhere() -> None:
    weights = axis_weights(128, 32, False, False)
    margin = discarded_margin(32)
    assert (weights[:margin] == 0).all() and (weights[-margin:] == 0).all()
    kept = weights[margin:-margin]
    assert kept.min() > WEIGHT_FLOOR * 0.99
    assert (weights[32:96] == 1).all()
    np.testing.assert_allclose(weights, weights[::-1])
    # raised cosine: monotone on the ramp
    assert (np.diff(weights[:64]) >= 0).all()


def test_border_sides_keep_full_weight() -> None:
    weights = axis_weights(64, 16, True, False)
    assert (weights[:48] == 1).all()
    assert weights[-1] == 0


@settings(max_examples=150, deadline=None)
@given(
    length=st.integers(1, 900),
    geometry=tile_and_overlap,
)
def test_every_pixel_gets_positive_weight(length: int, geometry: tuple[int, int]) -> None:
    tile, overlap = geometry
    layout = make_layout(length, 3, tile, overlap)
    total = np.zeros(max(length, tile), dtype=np.float64)
    for index in range(layout.rows):
        row = layout.window(index * layout.columns).row
        total[row : row + tile] += tile_weights(layout, index * layout.columns)[:, 0]
    assert total[:length].min() > 0


def _random_contributions(
    layout_height: int, layout_width: int, tile: int, overlap: int, seed: int
) -> tuple[object, dict[int, np.ndarray]]:
    layout = make_layout(layout_height, layout_width, tile, overlap)
    generator = np.random.default_rng(seed)
    outputs = {}
    for index in range(layout.count):
        probabilities = generator.random((3, tile, tile), dtype=np.float32)
        outputs[index] = whole_tile(
            layout, index, weight_probabilities(layout, index, probabilities)
        )
    return layout, outputs


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(20, 160),
    width=st.integers(20, 160),
    chunk=st.integers(7, 200),
    seed=st.integers(0, 1000),
)
def test_blending_is_bit_identical_for_any_chunking(
    height: int, width: int, chunk: int, seed: int
) -> None:
    layout, outputs = _random_contributions(height, width, 32, 8, seed)
    valid = np.ones((height, width), dtype=bool)
    whole = blend_window(
        layout,  # type: ignore[arg-type]
        PixelWindow(0, 0, height, width),
        list(outputs.items())[::-1],
        valid,
        3,
    )
    pieces = np.zeros_like(whole)
    for window in PixelWindow(0, 0, height, width).chunks(chunk):
        touching = tiles_touching(layout, window)  # type: ignore[arg-type]
        pieces[(slice(None), *window.slices())] = blend_window(
            layout,  # type: ignore[arg-type]
            window,
            [(index, outputs[index]) for index in touching],
            valid[window.slices()],
            3,
        )
    assert np.array_equal(whole, pieces)


def test_constant_tiles_blend_to_the_constant_with_full_border_coverage() -> None:
    layout = make_layout(90, 70, 32, 8)
    value = np.full((2, 32, 32), 0.25, dtype=np.float32)
    value[1] = 0.75
    contributions = [
        (index, whole_tile(layout, index, weight_probabilities(layout, index, value)))
        for index in range(layout.count)
    ]
    valid = np.ones((90, 70), dtype=bool)
    valid[40:45, 10:20] = False
    blended = blend_window(layout, PixelWindow(0, 0, 90, 70), contributions, valid, 2)
    np.testing.assert_allclose(blended[0][valid], 0.25, rtol=1e-6)
    np.testing.assert_allclose(blended[1][valid], 0.75, rtol=1e-6)
    assert (blended[:, ~valid] == 0).all()
    labels = labels_from_probabilities(blended, valid, [3, 7], 255)
    assert (labels[valid] == 7).all() and (labels[~valid] == 255).all()
    # first and last rows/columns are valid labels: no nodata frame
    assert (labels[0] == 7).all() and (labels[-1] == 7).all()
    assert (labels[:, 0] == 7).all() and (labels[:, -1] == 7).all()


def test_skipped_tiles_only_affect_invalid_pixels() -> None:
    layout = make_layout(64, 64, 32, 8)
    value = np.full((1, 32, 32), 1.0, dtype=np.float32)
    valid = np.zeros((64, 64), dtype=bool)
    valid[:10, :10] = True
    contributions: list[tuple[int, Pieces | None]] = [
        (
            index,
            whole_tile(layout, index, weight_probabilities(layout, index, value))
            if index == 0
            else None,
        )
        for index in range(layout.count)
    ]
    blended = blend_window(layout, PixelWindow(0, 0, 64, 64), contributions, valid, 1)
    assert (blended[0][valid] == 1).all()


def test_quantized_probabilities_use_255_scale_and_0_for_nodata() -> None:
    probabilities = np.array([[[0.0, 0.5, 1.0, 0.7]]], dtype=np.float32)
    valid = np.array([[True, True, True, False]])
    quantized = quantize_probabilities(probabilities, valid)
    assert quantized.tolist() == [[[0, 128, 255, 0]]]


def test_labels_match_numpy_argmax_including_ties() -> None:
    generator = np.random.default_rng(3)
    probabilities = generator.integers(0, 4, (5, 30, 40)).astype(np.float32)  # many ties
    valid = generator.random((30, 40)) > 0.1
    labels = labels_from_probabilities(probabilities, valid, [9, 3, 7, 1, 0], 255)
    expected = np.array([9, 3, 7, 1, 0], dtype=np.uint8)[np.argmax(probabilities, axis=0)]
    expected[~valid] = 255
    assert np.array_equal(labels, expected)
    # strided views (a window of a larger array), as the engine passes them
    view = labels_from_probabilities(probabilities[:, 2:, 3:], valid[2:, 3:], [9, 3, 7, 1, 0], 255)
    assert np.array_equal(view, expected[2:, 3:])
