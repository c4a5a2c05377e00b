from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from geoseg.grid import PixelWindow
from geoseg.predict.assemble import STRIP_BYTES, blend_strips


@given(
    row=st.integers(0, 5000),
    col=st.integers(0, 5000),
    height=st.integers(1, 5000),
    width=st.integers(1, 9000),
    classes=st.integers(1, 40),
)
def test_blend_strips_tile_the_window_in_full_width_rows_of_bounded_size(
    row: int, col: int, height: int, width: int, classes: int
) -> None:
    window = PixelWindow(row, col, height, width)
    strips = blend_strips(window, classes)
    assert strips[0].row == row and strips[-1].row_stop == window.row_stop
    for before, after in pairwise(strips):
        assert after.row == before.row_stop
    for strip in strips:
        assert (strip.col, strip.width) == (col, width) and strip.height >= 1
        assert strip.height == 1 or 4 * classes * strip.height * width <= STRIP_BYTES
