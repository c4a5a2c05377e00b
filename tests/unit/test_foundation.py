from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from hypothesis import given
from hypothesis import strategies as st
from rasterio.crs import CRS

from geoseg.areas import pixel_areas_m2
from geoseg.config import StrictModel, validate_mapping
from geoseg.errors import ChecksumError, ConfigError, GeosegError, InputError, OutputError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.io.atomic import atomic_path
from geoseg.io.checksums import sha256_file, verify_sha256

windows = st.builds(
    PixelWindow,
    st.integers(-50, 50),
    st.integers(-50, 50),
    st.integers(0, 60),
    st.integers(0, 60),
)


@given(windows, windows)
def test_window_intersection_is_symmetric_and_contained(a: PixelWindow, b: PixelWindow) -> None:
    inter = a.intersection(b)
    assert inter == b.intersection(a) or (inter.is_empty and b.intersection(a).is_empty)
    if not inter.is_empty:
        for window in (a, b):
            assert window.row <= inter.row and inter.row_stop <= window.row_stop
            assert window.col <= inter.col and inter.col_stop <= window.col_stop


@given(windows, st.integers(1, 40), st.integers(1, 40))
def test_clip_stays_inside(window: PixelWindow, height: int, width: int) -> None:
    clipped = window.clip(height, width)
    assert clipped.row >= 0 and clipped.col >= 0
    assert (clipped.row_stop <= height and clipped.col_stop <= width) or clipped.is_empty


def test_grid_bounds_and_subgrid() -> None:
    grid = RasterGrid(CRS.from_epsg(32612), Affine(30, 0, 1000, 0, -30, 5000), 10, 20)
    assert grid.bounds == (1000, 4700, 1600, 5000)
    sub = grid.subgrid(PixelWindow(2, 3, 100, 100))
    assert sub.shape == (8, 17)
    assert sub.transform.c == 1090 and sub.transform.f == 4940


@given(windows, st.integers(1, 25))
def test_chunks_cover_a_window_once_row_by_row(window: PixelWindow, size: int) -> None:
    rows = window.chunk_rows(size)
    chunks = window.chunks(size)
    assert chunks == tuple(chunk for row in rows for chunk in row)
    # row-major: the order a loop over rows, then columns, gives (work files are named by it)
    assert list(chunks) == sorted(chunks, key=lambda chunk: (chunk.row, chunk.col))
    assert all(0 < chunk.height <= size and 0 < chunk.width <= size for chunk in chunks)
    assert sum(chunk.height * chunk.width for chunk in chunks) == window.height * window.width
    for chunk in chunks:
        assert chunk.intersection(window) == chunk
    for row in rows:
        assert len({chunk.row for chunk in row}) == 1


def test_grid_chunks_and_their_size_check() -> None:
    grid = RasterGrid(CRS.from_epsg(32612), Affine(30, 0, 0, 0, -30, 0), 5, 7)
    assert grid.chunks(4) == (
        PixelWindow(0, 0, 4, 4),
        PixelWindow(0, 4, 4, 3),
        PixelWindow(4, 0, 1, 4),
        PixelWindow(4, 4, 1, 3),
    )
    assert grid.chunk_rows(10) == ((grid.full_window,),)
    with pytest.raises(InputError, match="chunk size"):
        grid.chunks(0)


def test_zoom_out_keeps_the_corner_and_covers_the_extent() -> None:
    grid = RasterGrid(CRS.from_epsg(32612), Affine(30, 0, 1000, 0, -30, 5000), 10, 7)
    coarse = grid.zoom_out(4)
    assert coarse.shape == (3, 2) and coarse.crs == grid.crs
    assert coarse.transform == Affine(120, 0, 1000, 0, -120, 5000)
    assert grid.zoom_out(1) == grid
    with pytest.raises(InputError, match="factor"):
        grid.zoom_out(0)


def test_projected_pixel_area_is_the_ground_area() -> None:
    # on UTM's central meridian the scale factor is 0.9996: a 30 m map pixel covers 900 / k0**2
    grid = RasterGrid(CRS.from_epsg(32612), Affine(30, 0, 499_940, 0, -30, 4_000_000), 4, 5)
    areas = pixel_areas_m2(grid)
    assert areas[:, 2] == pytest.approx(900.0 / 0.9996**2, rel=2e-6)


def test_geographic_pixel_area_matches_equal_area_cell() -> None:
    # a 0.01 deg cell at the equator is about 1113.2 m x 1105.7 m
    grid = RasterGrid(CRS.from_epsg(4326), Affine(0.01, 0, 0, 0, -0.01, 0.005), 1, 1)
    area = pixel_areas_m2(grid)[0, 0]
    assert area == pytest.approx(1113.19 * 1105.74, rel=1e-3)


def test_geographic_pixel_area_shrinks_poleward() -> None:
    grid = RasterGrid(CRS.from_epsg(4326), Affine(0.1, 0, 0, 0, -0.1, 60), 300, 1)
    areas = pixel_areas_m2(grid)[:, 0]
    assert np.all(np.diff(areas) > 0)  # rows go south, towards the equator


def test_atomic_path_keeps_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_path_replaces_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with atomic_path(target) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new"


def test_atomic_path_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"), atomic_path(tmp_path / "no" / "x"):
        pass


def test_checksum_mismatch_names_file(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"abc")
    verify_sha256(path, sha256_file(path))
    with pytest.raises(ChecksumError, match=r"a\.bin"):
        verify_sha256(path, "0" * 64)


class _Example(StrictModel):
    size: int


def test_strict_config_rejects_unknown_keys() -> None:
    assert validate_mapping(_Example, {"size": 3}, "x.yaml").size == 3
    with pytest.raises(ConfigError, match=r"x\.yaml") as info:
        validate_mapping(_Example, {"size": 3, "sise": 4}, "x.yaml")
    assert isinstance(info.value, GeosegError) and isinstance(info.value, ValueError)


def test_atomic_output_has_normal_file_permissions(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with atomic_path(target) as temporary:
        temporary.write_text("new")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
