"""geoseg.segment on tiny synthetic scenes: the same bytes as predict, lazily, on the same grid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import odc.geo.xr  # noqa: F401  # registers the .odc accessor
import pytest
import rasterio
import rioxarray
import xarray as xr
from affine import Affine
from distributed import Client

from geoseg.errors import BandMismatchError, InputError
from geoseg.labels import CLASS_NAMES_TAG, LABEL_NODATA
from geoseg.predict import inference
from geoseg.predict.arrays import scene_array
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from tests.clusters import started_client
from tests.conftest import write_geotiff
from tests.predict_fixtures import make_model_dir
from tests.unit.test_predict import DESCRIPTIONS, landscape
from workflows.predict import predict_file
from workflows.segment import segment

SETTINGS = {"device": "cpu", "precision": "fp32", "batch_size": 3}


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with started_client(1, threads_per_worker=2) as connected:
        yield connected


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny-unet")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = landscape(np.random.default_rng(5), 150, 130)
    data[:, 60:75, 20:50] = 65535
    data[2, 5:9, 100:110] = 65535  # nodata in one band only
    path = tmp_path_factory.mktemp("scene") / "scene.tif"
    return write_geotiff(path, data, nodata=65535, descriptions=DESCRIPTIONS)


@pytest.fixture(scope="module")
def predicted(
    scene: Path, model_dir: Path, client: Client, tmp_path_factory: pytest.TempPathFactory
) -> tuple[np.ndarray, np.ndarray]:
    folder = tmp_path_factory.mktemp("predicted")
    outputs = PredictOutputs(folder / "labels.tif", folder / "probabilities.tif")
    settings = InferenceSettings(chunk_size=64, **SETTINGS)  # type: ignore[arg-type]
    predict_file(scene, model_dir, settings, outputs, client=client, progress=False)
    with rasterio.open(outputs.labels) as labels, rasterio.open(outputs.paths[1]) as probs:
        return labels.read(1), probs.read()


def computed(array: xr.DataArray) -> np.ndarray:
    with dask.config.set(scheduler="threads"):
        return np.asarray(array.values)


@pytest.mark.parametrize(("input_chunks", "chunk_size"), [(40, 48), (150, 2048), (77, 100)])
def test_labels_equal_predict_whatever_the_chunking(
    scene: Path,
    model_dir: Path,
    predicted: tuple[np.ndarray, np.ndarray],
    input_chunks: int,
    chunk_size: int,
) -> None:
    data = rioxarray.open_rasterio(scene, chunks=input_chunks)
    settings = InferenceSettings(chunk_size=chunk_size, **SETTINGS)  # type: ignore[arg-type]
    labels = segment(data, model_dir, settings=settings)
    assert isinstance(labels.data, da.Array)
    assert labels.data.chunksize == (min(chunk_size, 150), min(chunk_size, 130))
    result = computed(labels)
    assert result.dtype == np.uint8
    assert np.array_equal(result, predicted[0])
    assert (result == LABEL_NODATA).sum() == 15 * 30 + 4 * 10


def test_result_keeps_the_grid_and_the_class_names(scene: Path, model_dir: Path) -> None:
    data = rioxarray.open_rasterio(scene, chunks=64)
    labels = segment(data, model_dir, settings=InferenceSettings(**SETTINGS))  # type: ignore[arg-type]
    with rasterio.open(scene) as source:
        assert labels.rio.crs == source.crs
        assert labels.rio.transform() == source.transform
        assert labels.odc.geobox.affine == source.transform
    assert np.array_equal(labels.x.values, data.x.values)
    assert np.array_equal(labels.y.values, data.y.values)
    assert labels.attrs["_FillValue"] == LABEL_NODATA
    assert '"4": "forest"' in labels.attrs[CLASS_NAMES_TAG]


def test_probabilities_are_the_probability_cog_over_255(
    scene: Path, model_dir: Path, predicted: tuple[np.ndarray, np.ndarray]
) -> None:
    data = rioxarray.open_rasterio(scene, chunks=50)
    settings = InferenceSettings(chunk_size=70, **SETTINGS)  # type: ignore[arg-type]
    probabilities = segment(data, model_dir, settings=settings, probabilities=True)
    assert probabilities.dims == ("class", "y", "x")
    assert list(probabilities["class"].values) == [1, 4, 5]
    assert list(probabilities["class_name"].values) == ["water", "forest", "shrubland"]
    result = computed(probabilities)
    assert result.dtype == np.float32
    assert np.array_equal(np.round(result * 255).astype(np.uint8), predicted[1])


def test_in_memory_float_array_with_nan_and_named_bands(
    scene: Path, model_dir: Path, predicted: tuple[np.ndarray, np.ndarray]
) -> None:
    with rasterio.open(scene) as source:
        raw = source.read().astype(np.float64)
        transform = source.transform
    raw[raw == 65535] = np.nan
    rows, cols = raw.shape[1:]
    data = xr.DataArray(
        raw[::-1],  # bands in another order, named by their labels
        dims=("band", "y", "x"),
        coords={
            "band": ["B5", "B4", "B3", "B2"],
            "y": transform.f + (np.arange(rows) + 0.5) * transform.e,
            "x": transform.c + (np.arange(cols) + 0.5) * transform.a,
        },
    ).rio.write_crs("EPSG:32612")
    bands = {"blue": "B2", "green": "B3", "red": "B4", "nir": "B5"}
    labels = segment(data, model_dir, settings=InferenceSettings(**SETTINGS), bands=bands)  # type: ignore[arg-type]
    assert np.array_equal(computed(labels), predicted[0])


def test_stackstac_corner_coordinates_are_read_as_corners() -> None:
    transform = Affine(30.0, 0.0, 1000.0, 0.0, -30.0, 5000.0)
    data = xr.DataArray(
        np.zeros((1, 2, 3, 4)),
        dims=("time", "band", "y", "x"),
        coords={
            "band": ["red", "nir"],
            "y": 5000.0 - 30.0 * np.arange(3),
            "x": 1000.0 + 30.0 * np.arange(4),
        },
        attrs={"transform": transform, "crs": "epsg:32612"},
    )
    scene = scene_array(data)
    assert scene.grid.transform == transform
    assert scene.band_names == ["red", "nir"]
    centred = data.assign_coords(x=data.x + 15.0, y=data.y - 15.0)
    assert scene_array(centred).grid.transform == transform


def test_a_dataset_of_band_variables_is_stacked() -> None:
    coords = {"y": [15.0, -15.0], "x": [15.0, 45.0]}
    data = xr.Dataset(
        {name: (("y", "x"), np.full((2, 2), value)) for value, name in enumerate(["red", "nir"])},
        coords=coords,
    ).rio.write_crs("EPSG:32615")
    scene = scene_array(data)
    assert scene.band_names == ["red", "nir"]
    assert scene.grid.transform == Affine(30.0, 0.0, 0.0, 0.0, -30.0, 30.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.expand_dims(time=2), "2 steps along 'time'"),
        (lambda a: a.drop_vars("spatial_ref"), "no CRS"),
        (lambda a: a.rename(x="col"), "no x dimension"),
        (lambda a: a.isel(x=[0, 1, 3]), "not evenly spaced"),
    ],
)
def test_unusable_arrays_are_refused_with_the_fix(change: object, message: str) -> None:
    data = xr.DataArray(
        np.zeros((2, 3, 4)),
        dims=("band", "y", "x"),
        coords={"band": ["red", "nir"], "y": [75.0, 45.0, 15.0], "x": [15.0, 45.0, 75.0, 105.0]},
    ).rio.write_crs("EPSG:32612")
    with pytest.raises(InputError, match=message):
        scene_array(change(data))  # type: ignore[operator]


def test_missing_bands_are_named(model_dir: Path) -> None:
    data = xr.DataArray(
        np.zeros((2, 3, 4)),
        dims=("band", "y", "x"),
        coords={"band": ["red", "nir"], "y": [75.0, 45.0, 15.0], "x": [15.0, 45.0, 75.0, 105.0]},
    ).rio.write_crs("EPSG:32612")
    with pytest.raises(BandMismatchError, match="blue"):
        segment(data, model_dir)
    with pytest.raises(BandMismatchError, match="B7"):
        scene_array(data, bands={"blue": "B7"})


def test_nothing_runs_the_model_until_computed(scene: Path, model_dir: Path) -> None:
    before = inference.model_loads()
    inference._CACHE.clear()
    data = rioxarray.open_rasterio(scene, chunks=64)
    labels = segment(data, model_dir, settings=InferenceSettings(**SETTINGS))  # type: ignore[arg-type]
    assert inference.model_loads() == before
    computed(labels)
    assert inference.model_loads() == before + 1
