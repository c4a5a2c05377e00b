"""Predict-time resampling: a finer scene read at a ``card_pixel_size`` card's pixel size."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import rioxarray
from affine import Affine
from distributed import Client
from rasterio.crs import CRS

from geoseg.grid import RasterGrid
from geoseg.io.checkpoint import read_card
from geoseg.predict.arrays import zoomed_values
from geoseg.predict.resampling import (
    BLOCK_MEAN,
    NO_RESAMPLING,
    RESAMPLING_TAG,
    at_card_pixel_size,
    output_grid,
    resampling_for,
)
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from geoseg.predict.sources import FileSource, MaskedSource, ZoomedSource
from tests.clusters import started_client
from tests.conftest import ORIGIN, write_geotiff
from tests.predict_fixtures import make_model_dir
from tests.unit.test_predict import DESCRIPTIONS, landscape
from workflows.predict import PredictResult, predict_file
from workflows.segment import segment
from workflows.staging import run_grid

SETTINGS = {"device": "cpu", "precision": "fp32", "batch_size": 3}
FINE = Affine(10.0, 0.0, ORIGIN[0], 0.0, -10.0, ORIGIN[1])
HEIGHT, WIDTH = 200, 170  # not multiples of 3: the last zoomed row and column are partial


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with started_client(1, threads_per_worker=2) as connected:
        yield connected


@pytest.fixture(scope="module")
def resampling_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "zoom", resampling="card_pixel_size")


@pytest.fixture(scope="module")
def native_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights (same seed) with a native card."""
    return make_model_dir(tmp_path_factory.mktemp("model") / "native")


@pytest.fixture(scope="module")
def fine_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10 m scene with nodata holes (one band only in one of them)."""
    data = landscape(np.random.default_rng(11), HEIGHT, WIDTH)
    data[:, 30:45, 20:50] = 65535
    data[1, 100:104, 10:14] = 65535
    path = tmp_path_factory.mktemp("scene") / "fine.tif"
    return write_geotiff(path, data, transform=FINE, nodata=65535, descriptions=DESCRIPTIONS)


def predicted(
    scene: Path, model: Path, out: Path, client: Client, chunk_size: int
) -> tuple[PredictResult, np.ndarray, dict[str, str], Affine]:
    settings = InferenceSettings(chunk_size=chunk_size, **SETTINGS)  # type: ignore[arg-type]
    result = predict_file(
        scene, model, settings, PredictOutputs(out), client=client, progress=False
    )
    with rasterio.open(out) as dataset:
        return result, dataset.read(1), dataset.tags(), dataset.transform


def test_native_cards_are_not_resampled(native_model: Path) -> None:
    card = read_card(native_model)
    grid = RasterGrid(CRS.from_epsg(32612), FINE, HEIGHT, WIDTH)
    assert resampling_for(card, grid) is None
    assert output_grid(card, grid) == grid


def test_the_factor_is_the_whole_multiple_nearest_the_card(resampling_model: Path) -> None:
    card = read_card(resampling_model)
    fine = RasterGrid(CRS.from_epsg(32612), FINE, HEIGHT, WIDTH)
    resampling = resampling_for(card, fine)
    assert resampling is not None
    assert resampling.factor == 3
    record = resampling.record()
    assert record["method"] == BLOCK_MEAN
    assert record["source_pixel_size_m"] == pytest.approx(10, rel=1e-3)
    assert record["output_pixel_size_m"] == pytest.approx(30, rel=1e-3)
    assert "3x3 blocks" in resampling.notice("scene.tif")
    assert output_grid(card, fine) == fine.zoom_out(3)
    landsat = RasterGrid(CRS.from_epsg(32612), Affine(30.0, 0, 0, 0, -30.0, 0), 10, 10)
    same = resampling_for(card, landsat)
    assert same is not None
    assert (same.factor, same.method, same.notice("x")) == (1, NO_RESAMPLING, "")


def test_a_masked_file_is_zoomed_after_its_mask(
    fine_scene: Path, resampling_model: Path, tmp_path: Path
) -> None:
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[0:3, 0:2] = 1  # two of the three columns of the first block
    mask[3:6, 3:6] = 1  # the whole second block
    mask_path = write_geotiff(tmp_path / "mask.tif", mask, transform=FINE)
    masked = MaskedSource.open(FileSource.open(fine_scene), [mask_path], 0)
    source, resampling = at_card_pixel_size(masked, read_card(resampling_model))
    assert isinstance(source, ZoomedSource)
    assert resampling is not None
    values, valid = source.read(source.grid.full_window)
    raw, _ = FileSource.open(fine_scene).read(masked.grid.full_window)
    assert valid[0, 0] and not valid[1, 1]
    assert np.allclose(values[:, 0, 0], raw[:, 0:3, 2].mean(axis=1))
    assert source.grid.shape == (67, 57)


def test_zoomed_arrays_equal_a_zoomed_file_read(fine_scene: Path) -> None:
    zoomed = ZoomedSource(FileSource.open(fine_scene), 3)
    values, valid = zoomed.read(zoomed.grid.full_window)
    with rasterio.open(fine_scene) as dataset:
        raw = dataset.read()
    means = zoomed_values(raw, 65535, 3)
    assert means.shape == values.shape
    assert np.array_equal(np.isfinite(means[0]), valid)
    assert np.array_equal(means[:, valid], values[:, valid])


@pytest.fixture(scope="module")
def zoomed_run(
    fine_scene: Path,
    resampling_model: Path,
    client: Client,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[PredictResult, np.ndarray, dict[str, str], Affine]:
    out = tmp_path_factory.mktemp("zoomed") / "labels.tif"
    return predicted(fine_scene, resampling_model, out, client, chunk_size=32)


def test_predict_writes_the_zoomed_grid_and_records_it(
    zoomed_run: tuple[PredictResult, np.ndarray, dict[str, str], Affine],
) -> None:
    result, labels, tags, transform = zoomed_run
    assert result.grid.shape == labels.shape == (67, 57)
    assert (transform.a, transform.e) == (30.0, -30.0)
    assert (transform.c, transform.f) == ORIGIN
    assert result.resampling is not None and result.resampling.factor == 3
    record = json.loads(tags[RESAMPLING_TAG])
    assert record == result.resampling.record()
    assert record["method"] == "block mean of valid pixels"
    assert result.pixel_size.verdict == "ok"
    assert set(np.unique(labels)) <= {1, 4, 5, 255}
    assert (labels == 255).sum() == 5 * 9  # rows 30-44 x cols 21-47: 5 x 9 whole blocks


def test_zoomed_predictions_do_not_depend_on_the_chunk_size(
    fine_scene: Path,
    resampling_model: Path,
    client: Client,
    tmp_path: Path,
    zoomed_run: tuple[PredictResult, np.ndarray, dict[str, str], Affine],
) -> None:
    _, other, _, _ = predicted(fine_scene, resampling_model, tmp_path / "a.tif", client, 48)
    assert np.array_equal(other, zoomed_run[1])


def test_zoomed_predictions_equal_a_native_read_of_the_block_means(
    fine_scene: Path,
    native_model: Path,
    client: Client,
    tmp_path: Path,
    zoomed_run: tuple[PredictResult, np.ndarray, dict[str, str], Affine],
) -> None:
    with rasterio.open(fine_scene) as dataset:
        means = zoomed_values(dataset.read(), 65535, 3)
    coarse = write_geotiff(
        tmp_path / "coarse.tif",
        means,
        transform=FINE @ Affine.scale(3),
        nodata=float("nan"),
        descriptions=DESCRIPTIONS,
    )
    result, labels, tags, _ = predicted(coarse, native_model, tmp_path / "n.tif", client, 2048)
    assert result.resampling is None
    assert RESAMPLING_TAG not in tags
    assert np.array_equal(labels, zoomed_run[1])


def test_segment_reads_a_finer_array_as_predict_does(
    fine_scene: Path,
    resampling_model: Path,
    zoomed_run: tuple[PredictResult, np.ndarray, dict[str, str], Affine],
) -> None:
    data = rioxarray.open_rasterio(fine_scene, chunks=40)
    settings = InferenceSettings(chunk_size=24, **SETTINGS)  # type: ignore[arg-type]
    labels = segment(data, resampling_model, settings=settings)
    assert labels.shape == (67, 57)
    assert labels.rio.resolution() == (30.0, -30.0)
    assert json.loads(labels.attrs[RESAMPLING_TAG])["factor"] == 3
    with dask.config.set(scheduler="threads"):
        assert np.array_equal(labels.values, zoomed_run[1])


def test_a_run_grid_is_zoomed_and_recorded(resampling_model: Path, native_model: Path) -> None:
    fine = RasterGrid(CRS.from_epsg(32612), FINE, HEIGHT, WIDTH)
    lines: list[str] = []
    grid, record = run_grid(fine, read_card(resampling_model), resampling_model, lines.append)
    assert grid == fine.zoom_out(3)
    assert record["resampling"]["factor"] == 3
    assert len(lines) == 1 and "block mean of valid pixels" in lines[0]
    lines.clear()
    assert run_grid(fine, read_card(native_model), native_model, lines.append) == (fine, {})
    assert lines == []
