"""The CUDA paths on the real Zion scene (skipped where no CUDA device is available).

Run on a GPU machine with ``pytest -m gpu``. They check what the CPU suite cannot:
the model runs on the GPU in the workers, CUDA agrees with the CPU, mixed precision
agrees with fp32, and the output still does not depend on the chunk size.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from distributed import Client

from geoseg.catalog.datadir import data_file
from geoseg.labels import LABEL_NODATA
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from tests.clusters import started_client
from workflows.cluster import WORKER_ENV, inference_placement
from workflows.predict import PredictResult, predict_file

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

SCENE = "zion/zion_landsat8_20150818_b2345.tif"
MODEL = "landcover-landsat"


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with started_client(2, processes=True, env=WORKER_ENV) as connected:
        yield connected


def _run(
    client: Client, out: Path, device: str, precision: str, chunk_size: int = 1024
) -> tuple[PredictResult, np.ndarray]:
    result = predict_file(
        data_file(SCENE),
        MODEL,
        InferenceSettings(chunk_size=chunk_size, device=device, precision=precision),
        PredictOutputs(out),
        client=client,
        progress=False,
    )
    with rasterio.open(out) as dataset:
        return result, dataset.read(1)


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    valid = a != LABEL_NODATA
    assert np.array_equal(valid, b != LABEL_NODATA)
    return float((a[valid] == b[valid]).mean())


@pytest.fixture(scope="module")
def cpu_labels(client: Client, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    return _run(client, tmp_path_factory.mktemp("cpu") / "labels.tif", "cpu", "fp32")[1]


def test_auto_places_the_model_on_the_workers_gpus(client: Client) -> None:
    placement = inference_placement(client, "auto")
    assert placement.device == "cuda" and placement.support.cuda


def test_cuda_fp32_agrees_with_the_cpu_and_ignores_the_chunk_size(
    client: Client, cpu_labels: np.ndarray, tmp_path: Path
) -> None:
    result, labels = _run(client, tmp_path / "a.tif", "cuda", "fp32", chunk_size=1024)
    assert (result.device, result.precision) == ("cuda", "fp32")
    assert _agreement(labels, cpu_labels) >= 0.999
    _, other = _run(client, tmp_path / "b.tif", "cuda", "fp32", chunk_size=512)
    assert (tmp_path / "a.tif").read_bytes() == (tmp_path / "b.tif").read_bytes()
    assert np.array_equal(labels, other)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cuda_agrees_with_fp32(
    client: Client, cpu_labels: np.ndarray, tmp_path: Path, precision: str
) -> None:
    result, labels = _run(client, tmp_path / f"{precision}.tif", "cuda", precision)
    assert result.precision == precision
    assert _agreement(labels, cpu_labels) >= 0.995


def test_workers_keep_one_model_on_the_gpu(client: Client, tmp_path: Path) -> None:
    _run(client, tmp_path / "auto.tif", "auto", "auto")

    def devices() -> list[str]:
        from geoseg.predict import inference

        return sorted({str(next(m.module.parameters()).device) for m in inference._CACHE.values()})

    found = client.run(devices)
    assert all("cuda:0" in on for on in found.values()), found
