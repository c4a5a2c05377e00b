from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoseg.errors import InputError
from geoseg.grid import PixelWindow
from geoseg.predict.tiling import (
    batch_taper,
    halo_window,
    make_layout,
    tile_batches,
    tile_origins,
    tiles_touching,
)

lengths = st.integers(min_value=1, max_value=3000)
tile_and_overlap = st.integers(min_value=4, max_value=600).flatmap(
    lambda tile: st.tuples(st.just(tile), st.integers(min_value=0, max_value=(tile - 1) // 2))
)


def test_origins_follow_stride_and_snap_last_tile_to_border() -> None:
    assert tile_origins(1000, 256, 32) == (0, 224, 448, 672, 744)
    assert tile_origins(256, 256, 32) == (0,)
    assert tile_origins(100, 256, 32) == (0,)
    assert tile_origins(480, 256, 32) == (0, 224)


@settings(max_examples=200, deadline=None)
@given(length=lengths, geometry=tile_and_overlap)
def test_origins_cover_axis_with_at_least_the_overlap(
    length: int, geometry: tuple[int, int]
) -> None:
    tile, overlap = geometry
    origins = tile_origins(length, tile, overlap)
    assert origins[0] == 0
    assert all(b > a for a, b in itertools.pairwise(origins))
    # consecutive tiles overlap by >= overlap, stride never exceeds tile - overlap
    assert all(b - a <= tile - overlap for a, b in itertools.pairwise(origins))
    if length >= tile:
        assert origins[-1] + tile == length
        assert all(origin >= 0 for origin in origins)
    else:
        assert origins == (0,)
    # all but the last lie on the stride lattice
    assert all(origin % (tile - overlap) == 0 for origin in origins[:-1])


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(
    height=st.integers(1, 700),
    width=st.integers(1, 700),
    geometry=tile_and_overlap,
    chunk=st.integers(1, 400),
)
def test_every_chunk_pixel_is_inside_a_touching_tile(
    height: int, width: int, geometry: tuple[int, int], chunk: int
) -> None:
    tile, overlap = geometry
    layout = make_layout(height, width, tile, overlap)
    covered = np.zeros((height, width), dtype=np.int32)
    chunks = PixelWindow(0, 0, height, width).chunks(min(chunk, 50) * 8)
    for window in chunks:
        indexes = tiles_touching(layout, window)
        assert indexes == sorted(indexes)
        halo = halo_window(layout, window)
        assert halo.intersection(window) == window
        for index in indexes:
            common = layout.window(index).intersection(window)
            assert not common.is_empty
            covered[common.clip(height, width).slices()] += 1
    assert covered.min() >= 1
    # chunks tile the scene exactly once
    counts = np.zeros((height, width), dtype=np.int32)
    for window in chunks:
        counts[window.slices()] += 1
    assert (counts == 1).all()


@settings(max_examples=100, deadline=None)
@given(count=st.integers(1, 200), batch=st.integers(1, 20))
def test_batches_partition_tiles_in_global_order(count: int, batch: int) -> None:
    layout = make_layout(10, count * 10, 10, 0)
    batches = tile_batches(layout, batch)
    flat = [index for group in batches for index in group]
    assert flat == list(range(layout.count))
    taper = batch_taper(batch)
    sizes = [len(group) for group in batches]
    # counted from the end: the taper, then full batches; the first batch takes the rest
    expected = [*taper[::-1], *[batch] * len(sizes)][: len(sizes)]
    assert sizes[::-1][:-1] == expected[:-1]
    assert 1 <= sizes[0] <= expected[len(sizes) - 1]


def test_batch_taper_halves_down_to_one() -> None:
    assert batch_taper(8) == (4, 4, 2, 2, 1, 1)
    assert batch_taper(3) == (1, 1)
    assert batch_taper(1) == ()
    layout = make_layout(10, 400, 10, 0)  # 40 tiles
    assert [len(group) for group in tile_batches(layout, 8)] == [2, 8, 8, 8, 4, 4, 2, 2, 1, 1]


def test_tiles_touching_a_window_match_brute_force() -> None:
    layout = make_layout(500, 700, 128, 16)
    window = PixelWindow(100, 200, 150, 90)
    expected = [
        index
        for index in range(layout.count)
        if not layout.window(index).intersection(window).is_empty
    ]
    assert tiles_touching(layout, window) == expected


def test_small_scene_has_one_padded_tile() -> None:
    layout = make_layout(100, 300, 256, 32)
    assert layout.rows == 1
    assert layout.window(0) == PixelWindow(0, 0, 256, 256)
    assert layout.border_sides(0) == (True, True, True, False)


@pytest.mark.parametrize(("tile", "overlap"), [(0, 0), (64, 32), (64, -1)])
def test_invalid_geometry_is_rejected(tile: int, overlap: int) -> None:
    with pytest.raises(InputError, match=r"tile|overlap"):
        make_layout(100, 100, tile, overlap)


def test_invalid_batch_and_chunk_sizes_are_rejected() -> None:
    layout = make_layout(100, 100, 32, 4)
    with pytest.raises(InputError, match="batch size"):
        tile_batches(layout, 0)
    with pytest.raises(InputError, match="chunk size"):
        PixelWindow(0, 0, 100, 100).chunks(0)
