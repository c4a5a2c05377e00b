"""Parts of multi-site training: band names, block means, class maps, kappa, chip windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

from geoseg.change.metrics import cohen_kappa, confusion_matrix, one_against_rest
from geoseg.errors import InputError
from geoseg.grid import PixelWindow
from geoseg.predict.preprocess import band_names_from_metadata
from geoseg.predict.sources import FileSource, ZoomedSource, block_mean, zoom_factor
from geoseg.training.config import ClassMapRef
from geoseg.training.sampling import class_map_codes, open_scene_source, random_chip_window
from tests.conftest import ORIGIN

S2_DESCRIPTIONS = ["B2 blue", "B8 nir", "B8A nir08", "B11 swir16"]


def write_s2(path: Path, descriptions: list[str], tags: list[str] | None) -> Path:
    """A 4-band 6 x 6 raster at 10 m whose band k holds the value k (1-based)."""
    data = np.stack([np.full((6, 6), k, dtype=np.uint16) for k in range(1, 5)])
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=6,
        height=6,
        count=4,
        dtype="uint16",
        crs="EPSG:32633",
        transform=Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]),
    ) as dataset:
        dataset.write(data)
        for index, text in enumerate(descriptions, start=1):
            dataset.set_band_description(index, text)
            if tags is not None:
                dataset.update_tags(index, common_name=tags[index - 1])
    return path


def test_common_name_tag_wins_and_b8a_is_not_nir() -> None:
    names = band_names_from_metadata(S2_DESCRIPTIONS, ["blue", "nir", "nir08", "swir16"])
    assert names == ["blue", "nir", "nir08", "swir16"]
    # descriptions alone: 'B8A nir08' is nir08 too
    assert band_names_from_metadata(S2_DESCRIPTIONS) == names
    # a free-text description loses against the tag
    assert band_names_from_metadata(["Band 1", "Band 2"], ["red", ""]) == ["red", "band"]


@pytest.mark.parametrize("tagged", [True, False])
def test_scene_bands_by_common_name_pick_b8_for_nir(tmp_path: Path, tagged: bool) -> None:
    # B8A first in the file: a lookup by prefix or order would take it for nir
    descriptions = ["B8A nir08", "B2 blue", "B8 nir", "B11 swir16"]
    tags = ["nir08", "blue", "nir", "swir16"] if tagged else None
    if tagged:
        descriptions = ["Band 1", "Band 2", "Band 3", "Band 4"]
    image = write_s2(tmp_path / "s2.tif", descriptions, tags)
    source = open_scene_source(image, ["blue", "nir"], None, None)
    assert source.band_names == ["blue", "nir"]
    values, _ = source.read(PixelWindow(0, 0, 2, 2))
    assert values[:, 0, 0].tolist() == [2, 3]  # band 2 (B2), band 3 (B8), never band 1 (B8A)


def test_real_sentinel2_site_resolves_b8(shared_data: Path) -> None:
    image = shared_data / "sites/rsgislib_aberystwyth_sentinel2_20210527/image.tif"
    source = open_scene_source(image, ["blue", "green", "red", "nir"], None, None)
    assert isinstance(source, FileSource)
    assert source.band_indexes == (1, 2, 3, 7)  # B2, B3, B4, B8 (B8A is band 8)


def test_zoomed_source_averages_valid_pixels(tmp_path: Path) -> None:
    image = write_s2(tmp_path / "s2.tif", S2_DESCRIPTIONS, None)
    source = open_scene_source(image, ["nir"], None, 30.0)
    assert isinstance(source, ZoomedSource) and source.factor == 3
    assert source.grid.shape == (2, 2)
    assert source.grid.resolution[0] == pytest.approx(30.0)
    values, valid = source.read(PixelWindow(0, 0, 3, 3))
    assert valid.tolist() == [[True, True, False], [True, True, False], [False, False, False]]
    assert values[0, 0, 0] == pytest.approx(2.0)


@settings(max_examples=40, deadline=None)
@given(
    factor=st.integers(1, 4),
    blocks=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    seed=st.integers(0, 1000),
)
def test_block_mean_equals_the_mean_of_each_block(
    factor: int, blocks: tuple[int, int], seed: int
) -> None:
    generator = np.random.default_rng(seed)
    height, width = blocks[0] * factor, blocks[1] * factor
    values = generator.random((2, height, width)).astype(np.float32)
    valid = generator.random((height, width)) > 0.3
    means, zoomed = block_mean(values, valid, factor)
    for row in range(blocks[0]):
        for col in range(blocks[1]):
            block = np.s_[row * factor : (row + 1) * factor, col * factor : (col + 1) * factor]
            assert zoomed[row, col] == valid[block].any()
            if valid[block].any():
                expected = values[(slice(None), *block)][:, valid[block]].mean(axis=1)
                np.testing.assert_allclose(means[:, row, col], expected, rtol=1e-5)


def test_zoom_factor_of_geographic_and_projected_grids() -> None:
    from geoseg.grid import RasterGrid

    metres = RasterGrid(rasterio.CRS.from_epsg(32633), Affine(10, 0, 0, 0, -10, 0), 5, 5)
    degrees = RasterGrid(rasterio.CRS.from_epsg(4326), Affine(9e-5, 0, 0, 0, -9e-5, 0), 5, 5)
    landsat = RasterGrid(rasterio.CRS.from_epsg(32633), Affine(30, 0, 0, 0, -30, 0), 5, 5)
    assert [zoom_factor(grid, 30.0) for grid in (metres, degrees, landsat)] == [3, 3, 1]


def test_class_map_codes_map_names_through_a_column() -> None:
    rows = [
        {"site": "a", "class": "forest", "forest": "1", "general_class": "forest"},
        {"site": "a", "class": "grass", "forest": "0", "general_class": "other_vegetation"},
        {"site": "b", "class": "forest", "forest": "1", "general_class": "forest"},
    ]
    forest = ClassMapRef(path="m.csv", site="a", values={"0": 0, "1": 1})
    assert class_map_codes(rows, forest, "x") == {"forest": 1, "grass": 0}
    general = ClassMapRef(path="m.csv", site="a", column="general_class", values={"forest": 3})
    assert class_map_codes(rows, general, "x") == {"forest": 3}
    with pytest.raises(InputError, match="no rows for site 'c'"):
        class_map_codes(rows, ClassMapRef(path="m.csv", site="c", values={"1": 1}), "x")


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 1000))
def test_kappa_equals_scikit_learn(seed: int) -> None:
    generator = np.random.default_rng(seed)
    truth = generator.integers(0, 3, 200)
    prediction = np.where(generator.random(200) < 0.6, truth, generator.integers(0, 3, 200))
    matrix = confusion_matrix(truth, prediction, 3)
    assert cohen_kappa(matrix) == pytest.approx(cohen_kappa_score(truth, prediction))
    binary = one_against_rest(matrix, 1)
    assert cohen_kappa(binary) == pytest.approx(cohen_kappa_score(truth == 1, prediction == 1))
    assert binary.sum() == matrix.sum()


def test_chips_larger_than_a_small_scene_cover_all_of_it() -> None:
    from types import SimpleNamespace

    scene = SimpleNamespace(train_windows=(PixelWindow(0, 0, 20, 30),))
    generator = np.random.default_rng(0)
    for _ in range(50):
        chip = random_chip_window(scene, 32, generator)  # type: ignore[arg-type]
        assert chip.intersection(PixelWindow(0, 0, 20, 30)) == PixelWindow(0, 0, 20, 30)
