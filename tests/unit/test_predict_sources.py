from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from geoseg.errors import BandMismatchError, InputError
from geoseg.grid import PixelWindow
from geoseg.predict.sources import FileSource, RasterSource
from tests.conftest import coordinate_image


def test_file_source_names_bands_and_reads_boundless(make_geotiff: Callable[..., Path]) -> None:
    data = coordinate_image(3, 40, 50)
    data[:, 0, 0] = 9999
    path = make_geotiff(data, nodata=9999, descriptions=["B4_red", "B5_nir", "B3_green"])
    source = FileSource.open(path)
    assert isinstance(source, RasterSource)
    assert source.band_names == ["red", "nir", "green"]
    values, valid = source.read(PixelWindow(-2, -3, 10, 10))
    # raw 16-bit values without scale or offset come as they are: float32 holds them exactly
    assert values.dtype == np.uint16 and values.shape == (3, 10, 10)
    assert not valid[:2].any() and not valid[:, :3].any()
    assert not valid[2, 3]  # nodata pixel (0, 0)
    assert valid[2, 4]
    assert values[1, 2, 4] == data[1, 0, 1]
    restored = pickle.loads(pickle.dumps(source))
    assert restored == source


def test_band_map_selects_and_orders_bands(make_geotiff: Callable[..., Path]) -> None:
    data = coordinate_image(3, 20, 20)
    path = make_geotiff(data)
    source = FileSource.open(path, band_map={"nir": 3, "red": 1})
    assert source.band_names == ["nir", "red"]
    values, _ = source.read(PixelWindow(0, 0, 20, 20))
    assert np.array_equal(values, data[[2, 0]])
    with pytest.raises(BandMismatchError, match="3 band"):
        FileSource.open(path, band_map={"nir": 4})


def test_scale_and_offset_give_physical_units(make_geotiff: Callable[..., Path]) -> None:
    data = np.full((2, 8, 8), 100, dtype=np.uint16)
    path = make_geotiff(data)
    source = FileSource.open(path, scales=[0.5, 2.0], offsets=[1.0, -1.0])
    values, valid = source.read(PixelWindow(0, 0, 8, 8))
    assert valid.all()
    assert values[0, 0, 0] == 51.0 and values[1, 0, 0] == 199.0
    with pytest.raises(InputError, match="one scale"):
        FileSource.open(path, scales=[1.0])


@pytest.mark.parametrize(
    ("dtype", "returned"),
    [
        (np.uint8, np.uint8),
        (np.int16, np.int16),
        (np.uint16, np.uint16),
        (np.int32, np.float32),  # float32 would round large int32 values: converted as before
        (np.float64, np.float32),
    ],
)
def test_read_keeps_exact_integers_and_converts_the_rest(
    make_geotiff: Callable[..., Path], dtype: type[np.generic], returned: type[np.generic]
) -> None:
    data = (coordinate_image(2, 12, 12) % 100).astype(dtype)
    data[1, 4, 5] = 7  # one band at nodata: the pixel is invalid
    source = FileSource.open(make_geotiff(data, nodata=7))
    values, valid = source.read(PixelWindow(-1, 0, 12, 12))
    assert values.dtype == returned
    np.testing.assert_array_equal(values[:, 1:], data[:, :11].astype(returned))
    expected = np.zeros((12, 12), dtype=bool)
    expected[1:] = np.all(data[:, :11] != 7, axis=0)
    np.testing.assert_array_equal(valid, expected)
    assert not valid[5, 5]


def test_identity_changes_when_the_file_changes(make_geotiff: Callable[..., Path]) -> None:
    path = make_geotiff(np.zeros((1, 8, 8), dtype=np.uint8), name="a.tif")
    first = FileSource.open(path).identity
    make_geotiff(np.ones((1, 9, 8), dtype=np.uint8), name="a.tif")
    assert FileSource.open(path).identity != first
