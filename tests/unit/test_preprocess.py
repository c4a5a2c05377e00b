from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from geoseg.errors import BandMismatchError, InputError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.models.card import InputScaling
from geoseg.predict.preprocess import (
    SceneStatistics,
    band_name_from_description,
    band_names_from_descriptions,
    normalize,
    reflect_pad,
    resolve_band_indexes,
    sample_windows,
    scene_statistics,
)


@pytest.mark.parametrize(
    ("description", "name"),
    [("B2_blue", "blue"), ("B5 NIR", "nir"), ("red", "red"), ("B4", ""), ("", "")],
)
def test_band_names_are_parsed_from_descriptions(description: str, name: str) -> None:
    assert band_name_from_description(description) == name


def test_unnamed_bands_get_positional_names() -> None:
    assert band_names_from_descriptions(["B3_green", ""]) == ["green", "band2"]


def test_bands_resolve_from_names_in_model_order() -> None:
    available = ["blue", "green", "red", "nir"]
    assert resolve_band_indexes("x.tif", ["nir", "red"], available) == [4, 3]


def test_explicit_band_map_wins() -> None:
    assert resolve_band_indexes("x.tif", ["red", "nir"], ["band1", "band2"], {"red": 2, "nir": 1})
    assert resolve_band_indexes(
        "x.tif", ["red", "nir"], ["band1", "band2"], {"red": 2, "nir": 1}
    ) == [2, 1]


def test_missing_band_names_file_band_and_fix() -> None:
    with pytest.raises(BandMismatchError, match=r"scene\.tif.*\['nir'\].*--bands"):
        resolve_band_indexes("scene.tif", ["red", "nir"], ["blue", "green", "red"])
    with pytest.raises(BandMismatchError, match="3 band"):
        resolve_band_indexes("scene.tif", ["red"], ["a", "b", "c"], {"red": 5})


def test_scene_statistics_are_numpy_percentiles_of_the_valid_pixels(
    rng: np.random.Generator,
) -> None:
    samples = []
    for _ in range(3):
        data = rng.gamma(2.0, 900.0, (4, 37, 41)).astype(np.float32)
        samples.append((data, rng.random((37, 41)) > 0.3))
    stats = scene_statistics("x.tif", samples, (2.0, 98.0))
    pixels = np.concatenate([data[:, valid] for data, valid in samples], axis=1)
    for band in range(4):
        values = pixels[band].astype(np.float64)
        assert stats.low[band] == np.percentile(values, 2.0)
        assert stats.high[band] == np.percentile(values, 98.0)


def test_scene_statistics_use_valid_pixels_only() -> None:
    data = np.arange(200, dtype=np.float32).reshape(2, 10, 10)
    valid = np.ones((10, 10), dtype=bool)
    valid[5:] = False
    stats = scene_statistics("x.tif", [(data, valid)], (0.0, 100.0))
    assert stats.low == (0.0, 100.0)
    assert stats.high == (49.0, 149.0)


def test_all_nodata_samples_raise() -> None:
    data = np.zeros((1, 4, 4), dtype=np.float32)
    with pytest.raises(InputError, match=r"x\.tif.*nodata"):
        scene_statistics("x.tif", [(data, np.zeros((4, 4), dtype=bool))], (2.0, 98.0))


def test_normalize_standardize_and_percentile() -> None:
    data = np.full((2, 2, 2), 10.0, dtype=np.float32)
    valid = np.array([[True, False], [True, True]])
    standard = InputScaling(units="dn", method="standardize", mean=[4.0, 0.0], std=[2.0, 5.0])
    result = normalize(data, valid, standard, None)
    assert result[0, 0, 0] == 3.0 and result[1, 0, 0] == 2.0
    assert (result[:, 0, 1] == 0).all()

    percentile = InputScaling(units="dn", method="scene_percentile")
    result = normalize(data, valid, percentile, SceneStatistics((0.0, 10.0), (20.0, 30.0)))
    np.testing.assert_allclose(result[:, 0, 0], [0.5, 0.0])
    with pytest.raises(InputError):
        normalize(data, valid, percentile, None)


def test_reflect_pad_mirrors_the_inside_part() -> None:
    data = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    padded_data = np.zeros((1, 4, 4), dtype=np.float32)
    padded_data[:, :2, :3] = data
    valid = np.zeros((4, 4), dtype=bool)
    valid[:2, :3] = True
    result, result_valid = reflect_pad(padded_data, valid, PixelWindow(0, 0, 2, 3))
    assert result[0].tolist() == [[0, 1, 2, 2], [3, 4, 5, 5], [3, 4, 5, 5], [0, 1, 2, 2]]
    assert result_valid.all()


def test_sample_windows_are_inside_and_fixed() -> None:
    grid = RasterGrid(CRS.from_epsg(32612), Affine(30, 0, 0, 0, -30, 0), 5000, 300)
    windows = sample_windows(grid)
    assert windows == sample_windows(grid)
    assert all(w.clip(5000, 300) == w and not w.is_empty for w in windows)
    assert len(windows) <= 8 * 8
    assert max(w.row_stop for w in windows) == 5000


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64])
def test_normalize_equals_numpy_arithmetic_in_the_promoted_type(dtype: type) -> None:
    generator = np.random.default_rng(7)
    if np.issubdtype(dtype, np.integer):
        data = generator.integers(0, np.iinfo(dtype).max, (3, 17, 23)).astype(dtype)
    else:
        data = (generator.random((3, 17, 23)) * 30000).astype(dtype)
    valid = generator.random((17, 23)) > 0.2
    statistics = SceneStatistics((123.4, 5.5, 0.1), (20000.7, 3000.2, 1.9))
    scaling = InputScaling(units="dn", method="scene_percentile")
    low = np.asarray(statistics.low, dtype=np.float32)[:, None, None]
    spread = np.maximum(np.asarray(statistics.high, dtype=np.float32)[:, None, None] - low, 1e-6)
    expected = np.where(valid, (data - low) / spread, 0).astype(np.float32)
    result = normalize(data, valid, scaling, statistics)
    assert result.dtype == np.float32
    assert np.array_equal(result, expected)


def test_normalize_selects_bands_and_columns_into_a_given_array() -> None:
    generator = np.random.default_rng(8)
    data = generator.random((4, 6, 20), dtype=np.float32) * 100
    valid = generator.random((6, 20)) > 0.3
    scaling = InputScaling(units="dn", method="standardize", mean=[1.0, 2.0], std=[3.0, 4.0])
    out = np.full((2, 6, 7), np.nan, dtype=np.float32)
    result = normalize(data, valid, scaling, None, bands=[3, 1], cols=slice(5, 12), out=out)
    assert result is out
    expected = normalize(data[[3, 1], :, 5:12], valid[:, 5:12], scaling, None)
    assert np.array_equal(out, expected)
    with pytest.raises(ValueError, match="float32 array of shape"):
        normalize(data, valid, scaling, None, bands=[3, 1], out=np.empty((2, 6, 7), np.float32))
