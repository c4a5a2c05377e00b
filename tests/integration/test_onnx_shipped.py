"""ONNX export and ONNX Runtime on the shipped models and the real Zion scene."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from distributed import Client

from geoseg.catalog.datadir import data_file
from geoseg.cli import main
from geoseg.io.checkpoint import read_card
from geoseg.labels import LABEL_NODATA
from geoseg.models.loading import resolve_model_dir
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from geoseg.training.config import load_train_config
from geoseg.training.pipeline import prepare_scenes
from geoseg.training.quantize import record_onnx_agreement
from tests.clusters import started_client
from workflows.predict import PredictResult, predict_file
from workflows.train_defaults import CONFIG_DIR, DEFAULT_MODELS

pytestmark = pytest.mark.slow

SCENE = "zion/zion_landsat8_20150818_b2345.tif"


@pytest.mark.parametrize("name", DEFAULT_MODELS)
def test_shipped_models_export_with_agreeing_labels(
    name: str, tmp_path: Path, shared_data: Path
) -> None:
    out = tmp_path / name
    main(["models", "export", name, "--out", str(out)])
    export = read_card(out).export
    assert export is not None
    assert export.label_agreement >= 0.999
    assert export.scene == Path(SCENE).name
    assert (out / "model.onnx").stat().st_size > 10_000


@pytest.mark.parametrize("name", DEFAULT_MODELS)
def test_recorded_onnx_agreement_is_reproduced(
    name: str, tmp_path: Path, shared_data: Path
) -> None:
    directory = tmp_path / name
    shutil.copytree(resolve_model_dir(name), directory)
    recorded = read_card(directory).onnx
    assert recorded is not None
    scenes = prepare_scenes(
        load_train_config(CONFIG_DIR / f"{name}.yaml"), data_file(SCENE).parents[1]
    )
    check = record_onnx_agreement(directory, scenes)
    found = check.card.onnx
    assert found is not None and found.int8_agreement is not None
    assert recorded.int8_agreement is not None
    assert found.pixels == recorded.pixels == 112800
    assert found.fp32_agreement >= 0.999
    # other CPUs order sums differently: a few pixels either way
    assert found.int8_agreement == pytest.approx(recorded.int8_agreement, abs=0.002)
    assert check.accepted == (recorded.int8_file is not None)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with started_client(1, threads_per_worker=1) as connected:
        yield connected


def _labels(client: Client, out: Path, **options: str) -> tuple[PredictResult, np.ndarray]:
    result = predict_file(
        data_file(SCENE),
        "landcover-landsat",
        InferenceSettings(**options),
        PredictOutputs(out),
        client=client,
        progress=False,
    )
    with rasterio.open(out) as dataset:
        return result, dataset.read(1)


def test_onnxruntime_fp32_and_int8_agree_with_torch_on_zion(client: Client, tmp_path: Path) -> None:
    _, reference = _labels(client, tmp_path / "torch.tif", engine="torch", precision="fp32")
    valid = reference != LABEL_NODATA
    for precision, least in (("fp32", 0.999), ("int8", 0.995)):
        result, labels = _labels(
            client, tmp_path / f"{precision}.tif", engine="onnxruntime", precision=precision
        )
        assert (result.engine, result.precision) == ("onnxruntime", precision)
        assert np.array_equal(labels == LABEL_NODATA, ~valid)
        assert float((labels[valid] == reference[valid]).mean()) >= least
