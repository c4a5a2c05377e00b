"""User masks reaching predict (labels and probabilities) and vectorize."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from distributed import Client
from rasterio.features import rasterize
from scipy import ndimage

from geoseg.errors import RasterReadError
from geoseg.labels import LABEL_NODATA
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from tests.clusters import started_client
from tests.conftest import write_geotiff
from tests.predict_fixtures import make_model_dir
from tests.unit.test_predict import DESCRIPTIONS, landscape
from workflows.predict import predict_file
from workflows.vectorize import vectorize_file


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with started_client(1, threads_per_worker=2) as connected:
        yield connected


def blobs(shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[20:31, 40:47] = 1
    mask[90, 150] = 7  # any non-zero value masks
    mask[shape[0] - 2 :, :5] = 1  # at the border
    return mask


@pytest.mark.slow
def test_predict_mask_makes_labels_nodata_exactly_there(
    tmp_path: Path, rng: np.random.Generator, client: Client
) -> None:
    model = make_model_dir(tmp_path / "model")
    data = landscape(rng, 130, 170)
    scene = write_geotiff(tmp_path / "scene.tif", data, nodata=65535, descriptions=DESCRIPTIONS)
    mask = write_geotiff(tmp_path / "mask.tif", blobs((130, 170))[None], nodata=None)
    buffer = 2
    expected = ndimage.distance_transform_cdt(blobs((130, 170)) == 0, metric="chessboard") <= buffer
    outputs = {}
    for chunk in (64, 4096):
        labels = tmp_path / f"labels{chunk}.tif"
        probabilities = tmp_path / f"probabilities{chunk}.tif"
        predict_file(
            scene,
            model,
            InferenceSettings(chunk_size=chunk),
            PredictOutputs(labels, probabilities),
            client=client,
            progress=False,
            masks=[mask],
            mask_buffer=buffer,
        )
        with rasterio.open(labels) as dataset:
            outputs[chunk] = dataset.read(1)
        with rasterio.open(probabilities) as dataset:
            probability = dataset.read()
        assert ((outputs[chunk] == LABEL_NODATA) == expected).all()
        assert (probability[:, expected] == 0).all()
        assert (probability[:, ~expected].sum(axis=0) > 0).all()
    assert (outputs[64] == outputs[4096]).all()


@pytest.mark.slow
def test_predict_mask_missing_is_one_clear_error(
    tmp_path: Path, rng: np.random.Generator, client: Client
) -> None:
    scene = write_geotiff(
        tmp_path / "scene.tif", landscape(rng, 40, 40), nodata=65535, descriptions=DESCRIPTIONS
    )
    with pytest.raises(RasterReadError, match=r"nomask\.tif"):
        predict_file(
            scene,
            make_model_dir(tmp_path / "model"),
            InferenceSettings(),
            PredictOutputs(tmp_path / "labels.tif"),
            client=client,
            progress=False,
            masks=[tmp_path / "nomask.tif"],
        )
    assert not (tmp_path / "labels.tif").exists()


def test_vectorize_mask_leaves_masked_pixels_out(tmp_path: Path, rng: np.random.Generator) -> None:
    shape = (120, 170)
    classes = rng.integers(0, 3, size=(shape[0] // 10, shape[1] // 10)).astype(np.uint8)
    labels = np.kron(classes, np.ones((10, 10), dtype=np.uint8))
    labels[60:65, 0:8] = LABEL_NODATA
    path = write_geotiff(tmp_path / "labels.tif", labels[None], nodata=LABEL_NODATA)
    masked = blobs(shape)
    mask = write_geotiff(tmp_path / "mask.tif", masked[None], nodata=None)
    out = tmp_path / "polygons.gpkg"
    vectorize_file(path, out, layer="classes", chunk_size=32, masks=[mask])
    polygons = pyogrio.read_dataframe(out, layer="classes")
    with rasterio.open(path) as dataset:
        transform = dataset.transform
    burned = rasterize(
        (
            (geometry, int(class_id) + 1)
            for geometry, class_id in zip(polygons.geometry, polygons["class_id"], strict=True)
        ),
        out_shape=shape,
        transform=transform,
        dtype="uint8",
    )
    kept = (masked == 0) & (labels != LABEL_NODATA)
    assert (burned[~kept] == 0).all()  # no polygon over a masked or nodata pixel
    assert (burned[kept] == labels[kept] + 1).all()  # every other pixel polygonized, same class
