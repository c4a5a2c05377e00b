from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from numpy.typing import NDArray
from rasterio.enums import ColorInterp

from geoseg.errors import RasterReadError
from geoseg.grid import PixelWindow
from geoseg.io import raster
from geoseg.io.raster import read_window_masked

WINDOWS = [
    PixelWindow(0, 0, 48, 40),  # inside
    PixelWindow(-5, -7, 30, 30),  # past the top-left corner
    PixelWindow(30, 25, 40, 40),  # past the bottom-right corner
    PixelWindow(100, 100, 10, 10),  # entirely outside
]


def reference_read(
    path: Path, window: PixelWindow, bands: list[int] | None
) -> tuple[NDArray[np.generic], NDArray[np.bool_]]:
    """The plain reading: open, read the bands and GDAL's dataset mask, close."""
    with rasterio.open(path) as dataset:
        indexes = bands or list(range(1, dataset.count + 1))
        dtype = np.dtype(dataset.dtypes[0])
        out = np.full((len(indexes), *window.shape), dataset.nodata or 0, dtype)
        valid = np.zeros(window.shape, dtype=bool)
        inside = window.clip(dataset.height, dataset.width)
        if not inside.is_empty:
            rows, cols = inside.shift(-window.row, -window.col).slices()
            out[:, rows, cols] = dataset.read(indexes, window=inside.to_rasterio())
            valid[rows, cols] = dataset.dataset_mask(window=inside.to_rasterio()) > 0
        return out, valid


def assert_reads_like_reference(path: Path, bands: list[int] | None = None) -> None:
    """GDAL's values and mask; with ``any_nodata_invalid`` also no read band at nodata."""
    with rasterio.open(path) as dataset:
        nodata = dataset.nodata
    for _ in range(2):  # the second round reads through the dataset kept open
        for window in WINDOWS:
            expected_values, expected_valid = reference_read(path, window, bands)
            strict_valid = expected_valid.copy()
            if nodata is not None:
                strict_valid &= np.all(expected_values != nodata, axis=0)
            for strict, expected in ((False, expected_valid), (True, strict_valid)):
                values, valid = read_window_masked(
                    path, window, bands=bands, any_nodata_invalid=strict
                )
                assert values.dtype == expected_values.dtype
                np.testing.assert_array_equal(values, expected_values)
                np.testing.assert_array_equal(valid, expected)


def with_nodata_pixels(data: NDArray[np.generic], nodata: float) -> NDArray[np.generic]:
    data = data.copy()
    data[:, 3, 4] = nodata  # every band nodata: invalid in GDAL's mask
    data[0, 5, 6] = nodata  # one band nodata: valid in GDAL's mask
    data[:, 40:, 30:] = nodata
    return data


@pytest.mark.parametrize("bands", [None, [2, 1], [3]])
def test_integer_nodata_raster_reads_like_gdal(
    make_geotiff: Callable[..., Path], rng: np.random.Generator, bands: list[int] | None
) -> None:
    data = rng.integers(0, 1000, size=(3, 48, 40), dtype=np.uint16)
    path = make_geotiff(with_nodata_pixels(data, 65535), nodata=65535, blocksize=16)
    assert_reads_like_reference(path, bands)
    # one band at nodata: valid for GDAL, invalid when any nodata band counts
    window = PixelWindow(0, 0, 48, 40)
    assert read_window_masked(path, window, bands=bands)[1][5, 6]
    if bands is None or 1 in bands:
        assert not read_window_masked(path, window, bands=bands, any_nodata_invalid=True)[1][5, 6]


def test_signed_nodata_raster_reads_like_gdal(
    make_geotiff: Callable[..., Path], rng: np.random.Generator
) -> None:
    data = rng.integers(-500, 500, size=(2, 48, 40), dtype=np.int16)
    assert_reads_like_reference(make_geotiff(with_nodata_pixels(data, -9999), nodata=-9999))


def test_raster_without_nodata_and_float_nan_nodata_read_like_gdal(
    make_geotiff: Callable[..., Path], rng: np.random.Generator
) -> None:
    assert_reads_like_reference(make_geotiff(rng.integers(0, 9, (2, 48, 40), dtype=np.uint8)))
    floats = rng.random((2, 48, 40), dtype=np.float32)
    assert_reads_like_reference(make_geotiff(with_nodata_pixels(floats, np.nan), nodata=np.nan))


def test_internal_mask_and_alpha_band_read_like_gdal(
    make_geotiff: Callable[..., Path], rng: np.random.Generator, tmp_path: Path
) -> None:
    data = rng.integers(0, 9, (3, 48, 40), dtype=np.uint8)
    masked = make_geotiff(data, nodata=None)
    mask = np.full((48, 40), 255, dtype=np.uint8)
    mask[10:20, 5:9] = 0
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(masked, "r+") as dataset:
        dataset.write_mask(mask)
    assert_reads_like_reference(masked)
    rgba = np.concatenate([data, (mask > 0).astype(np.uint8)[None] * 255])
    alpha = make_geotiff(rgba)
    with rasterio.open(alpha, "r+") as dataset:
        dataset.colorinterp = [
            ColorInterp.red,
            ColorInterp.green,
            ColorInterp.blue,
            ColorInterp.alpha,
        ]
    assert_reads_like_reference(alpha)
    assert not read_window_masked(alpha, PixelWindow(0, 0, 48, 40))[1][12, 6]


def test_a_replaced_file_is_read_again(make_geotiff: Callable[..., Path]) -> None:
    path = make_geotiff(np.zeros((1, 8, 8), dtype=np.uint8), name="a.tif")
    assert read_window_masked(path, PixelWindow(0, 0, 8, 8))[0].max() == 0
    make_geotiff(np.ones((1, 9, 8), dtype=np.uint8), name="a.tif")
    assert read_window_masked(path, PixelWindow(0, 0, 8, 8))[0].min() == 1


def test_open_datasets_are_bounded_and_errors_name_the_file(
    make_geotiff: Callable[..., Path], tmp_path: Path
) -> None:
    paths = [
        make_geotiff(np.full((1, 8, 8), value, dtype=np.uint8))
        for value in range(raster.OPEN_DATASETS_PER_THREAD + 2)
    ]
    for value, path in enumerate(paths):
        assert read_window_masked(path, PixelWindow(0, 0, 8, 8))[0][0, 0, 0] == value
    assert len(raster._open_datasets.datasets) == raster.OPEN_DATASETS_PER_THREAD
    with pytest.raises(RasterReadError, match=r"missing\.tif"):
        read_window_masked(tmp_path / "missing.tif", PixelWindow(0, 0, 8, 8))
