from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from geoseg.errors import BandMismatchError, InputError
from geoseg.grid import PixelWindow
from geoseg.sources import FileSource, RasterSource
from tests.conftest import coordinate_image


def test_file_source_names_bands_and_reads_boundless(make_geotiff: Callable[..., Path]) -> None:
    data = coordinate_image(3, 40, 50)
    data[:, 0, 0] = 9999
    path = make_geotiff(data, nodata=9999, descriptions=["B4_red", "B5_nir", "B3_green"])
    source = FileSource.open(path)
    assert isinstance(source, RasterSource)
    assert source.band_names == ["red", "nir", "green"]
    values, valid = source.read(PixelWindow(-2, -3, 10, 10))
    assert values.dtype == np.float32 and values.shape == (3, 10, 10)
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
    assert np.array_equal(values, data[[2, 0]].astype(np.float32))
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


def test_identity_changes_when_the_file_changes(make_geotiff: Callable[..., Path]) -> None:
    path = make_geotiff(np.zeros((1, 8, 8), dtype=np.uint8), name="a.tif")
    first = FileSource.open(path).identity
    make_geotiff(np.ones((1, 9, 8), dtype=np.uint8), name="a.tif")
    assert FileSource.open(path).identity != first
