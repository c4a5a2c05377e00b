"""ONNX export, ONNX Runtime inference, int8 quantization and the engine choice."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import rioxarray
import torch
from distributed import Client, LocalCluster

import geoseg
from geoseg.cli import main
from geoseg.errors import ConfigError, ModelError
from geoseg.io.checkpoint import read_card
from geoseg.models import export
from geoseg.models.card import OnnxRecord
from geoseg.models.loading import load_model
from geoseg.models.registry import build_model
from geoseg.predict import onnx_runtime
from geoseg.predict.engines import select_engine
from geoseg.predict.inference import DeviceSupport, model_key
from geoseg.predict.placement import place_inference
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from geoseg.training.pipeline import update_card
from tests.clusters import started_cluster
from tests.conftest import write_geotiff
from tests.predict_fixtures import make_model_dir
from tests.unit.test_predict import DESCRIPTIONS, landscape
from workflows.predict import predict_file

CPU = DeviceSupport(cuda=False, onnxruntime=True)
FAST_CPU = DeviceSupport(cuda=False, cpu_bf16=True, onnxruntime=True, cpu_vnni=True)
ACCEPTED = OnnxRecord(
    opset=17,
    fp32_agreement=1.0,
    int8_agreement=0.997,
    int8_file="model.int8.onnx",
    int8_sha256="0" * 64,
    pixels=100,
)
REFUSED = OnnxRecord(opset=17, fp32_agreement=0.9999, int8_agreement=0.99, pixels=100)


# --- the engine choice (pure) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("support", "bf16", "onnx", "expected"),
    [
        (FAST_CPU, 0.999, ACCEPTED, ("onnxruntime", "int8")),
        (FAST_CPU, 0.999, REFUSED, ("torch", "bf16")),
        (FAST_CPU, 0.99, REFUSED, ("onnxruntime", "fp32")),
        (FAST_CPU, 0.99, None, ("torch", "fp32")),
        (CPU, 0.999, ACCEPTED, ("onnxruntime", "fp32")),  # no VNNI: no int8, no native bf16
        (replace(FAST_CPU, onnxruntime=False), 0.999, ACCEPTED, ("torch", "bf16")),
        (FAST_CPU, None, REFUSED.model_copy(update={"fp32_agreement": 0.99}), ("torch", "fp32")),
    ],
)
def test_auto_takes_the_fastest_engine_the_card_accepts(
    support: DeviceSupport,
    bf16: float | None,
    onnx: OnnxRecord | None,
    expected: tuple[str, str],
) -> None:
    found = select_engine("auto", "auto", "cpu", support, cpu_bf16_agreement=bf16, onnx=onnx)
    assert found == expected


def test_auto_keeps_a_precision_asked_for() -> None:
    options = {"cpu_bf16_agreement": 0.999, "onnx": ACCEPTED}
    assert select_engine("auto", "fp32", "cpu", FAST_CPU, **options) == ("onnxruntime", "fp32")
    assert select_engine("auto", "bf16", "cpu", FAST_CPU, **options) == ("torch", "bf16")
    assert select_engine("auto", "int8", "cpu", CPU, **options) == ("onnxruntime", "int8")
    cuda = DeviceSupport(cuda=True, cuda_bf16=True, onnxruntime=True)
    assert select_engine("auto", "auto", "cuda", cuda, **options) == ("torch", "bf16")


def test_explicit_engines() -> None:
    assert select_engine("torch", "auto", "cpu", FAST_CPU, onnx=ACCEPTED) == ("torch", "fp32")
    assert select_engine("onnxruntime", "auto", "cpu", CPU, onnx=None) == ("onnxruntime", "fp32")
    found = select_engine("onnxruntime", "auto", "cpu", FAST_CPU, onnx=ACCEPTED)
    assert found == ("onnxruntime", "int8")
    with pytest.raises(ConfigError, match="no onnxruntime"):
        select_engine("onnxruntime", "fp32", "cpu", DeviceSupport(cuda=False))
    with pytest.raises(ConfigError, match="CUDA execution provider"):
        select_engine("onnxruntime", "auto", "cuda", DeviceSupport(cuda=True, onnxruntime=True))
    gpu = DeviceSupport(cuda=True, onnxruntime=True, ort_cuda=True)
    assert select_engine("onnxruntime", "auto", "cuda", gpu) == ("onnxruntime", "fp32")


@pytest.mark.parametrize(
    ("onnx", "message"),
    [
        (None, "records no int8 agreement"),
        (REFUSED, r"agree with fp32 on 99\.00% .* below the 99\.5% required"),
    ],
)
def test_int8_is_refused_unless_the_card_accepted_it(onnx: OnnxRecord | None, message: str) -> None:
    for engine in ("onnxruntime", "auto"):
        with pytest.raises(ConfigError, match=message):
            select_engine(engine, "int8", "cpu", FAST_CPU, onnx=onnx)
    # and auto never picks it
    assert select_engine("auto", "auto", "cpu", FAST_CPU, onnx=onnx)[1] != "int8"


def test_placement_and_manifest_record_the_engine() -> None:
    settings = InferenceSettings(engine="auto")
    placement = place_inference(
        "cpu", {"a": FAST_CPU, "b": CPU}, engine="auto", onnx=ACCEPTED, cpu_bf16_agreement=0.999
    )
    # worker b has no VNNI nor native bf16: what every worker runs natively wins
    assert (placement.engine, placement.precision) == ("onnxruntime", "fp32")
    parameters = settings.output_parameters(placement)
    assert parameters["engine"] == "auto"
    assert parameters["engine_used"] == "onnxruntime"
    assert parameters["precision_used"] == "fp32"


# --- export ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("architecture", "encoder", "options"),
    [
        ("unet", "mobilenet_v2", {"encoder_depth": 3, "decoder_channels": [16, 8, 4]}),
        ("segnet", "", {"widths": [8, 16], "convs": 1}),
    ],
)
def test_export_matches_pytorch_with_a_dynamic_batch(
    architecture: str, encoder: str, options: dict[str, object]
) -> None:
    torch.manual_seed(0)
    module = build_model(
        architecture, encoder=encoder, in_channels=4, num_classes=3, options=options
    )
    module.eval()
    session = onnx_runtime.make_session(export.onnx_bytes(module, 4), "cpu", 1)
    generator = torch.Generator().manual_seed(1)
    for shape in ((1, 4, 64, 64), (3, 4, 64, 64), (2, 4, 96, 128)):
        inputs = torch.randn(*shape, generator=generator)
        with torch.no_grad():
            expected = torch.softmax(module(inputs), dim=1).numpy()
        found = onnx_runtime.session_probabilities(session, inputs.numpy(), "cpu")
        assert found.shape == expected.shape
        np.testing.assert_allclose(found, expected, atol=1e-4)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(
        tmp_path_factory.mktemp("onnx") / "tiny-unet", encoder="mobilenet_v2", tile_size=64
    )


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = landscape(np.random.default_rng(5), 150, 170)
    data[:, 60:80, 20:50] = 65535
    path = tmp_path_factory.mktemp("scene") / "scene.tif"
    return write_geotiff(path, data, nodata=65535, descriptions=DESCRIPTIONS)


def test_models_export_writes_the_checked_model_and_its_card(
    model_dir: Path, scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "exported"
    main(["models", "export", str(model_dir), "--out", str(out), "--scene", str(scene)])
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "model.onnx"]
    card = read_card(out)
    assert card.export is not None
    assert card.export.format == "onnx" and card.export.opset == export.OPSET
    assert card.export.label_agreement >= export.EXPORT_AGREEMENT
    assert card.export.pixels > 0
    assert card.export.sha256 == hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    assert "labels agree with PyTorch fp32" in capsys.readouterr().out


def test_an_export_that_disagrees_is_refused_and_leaves_nothing(
    model_dir: Path,
    scene: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real = export.onnx_candidate

    def shifted(model: bytes, threads: int = 1) -> export.Probabilities:
        candidate = real(model, threads)
        return lambda inputs: np.roll(candidate(inputs), 1, axis=1)  # other labels

    monkeypatch.setattr(export, "onnx_candidate", shifted)
    out = tmp_path / "exported"
    with pytest.raises(SystemExit):
        main(["models", "export", str(model_dir), "--out", str(out), "--scene", str(scene)])
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "below the 99.9% required" in error and "nothing was written" in error
    assert not out.exists()


# --- prediction with ONNX Runtime -----------------------------------------------------


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    cluster: LocalCluster
    with started_cluster(1, threads_per_worker=1) as cluster:
        yield cluster.scheduler_address


def _predict(scene: Path, model: Path, out: Path, scheduler: str, *options: str) -> np.ndarray:
    arguments = ["predict", str(scene), "--model", str(model), "--out", str(out)]
    main([*arguments, "--scheduler", scheduler, *options])
    with rasterio.open(out) as dataset:
        labels: np.ndarray = dataset.read(1)
    return labels


def test_onnxruntime_labels_match_torch_and_do_not_depend_on_the_chunks(
    model_dir: Path, scene: Path, tmp_path: Path, scheduler: str
) -> None:
    torch_labels = _predict(
        scene, model_dir, tmp_path / "torch.tif", scheduler, "--engine", "torch"
    )
    ort = ("--engine", "onnxruntime")
    chunks_64 = _predict(
        scene, model_dir, tmp_path / "a.tif", scheduler, *ort, "--chunk-size", "64"
    )
    chunks_128 = _predict(
        scene, model_dir, tmp_path / "b.tif", scheduler, *ort, "--chunk-size", "128"
    )
    assert np.array_equal(chunks_64, chunks_128)
    assert (chunks_64 == 255).sum() == (torch_labels == 255).sum() > 0
    assert np.mean(chunks_64 == torch_labels) >= 0.999


def test_int8_prediction_is_refused_for_a_card_without_an_accepted_model(
    model_dir: Path, scene: Path, tmp_path: Path, scheduler: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "labels.tif"
    with pytest.raises(SystemExit):
        _predict(scene, model_dir, out, scheduler, "--engine", "onnxruntime", "--precision", "int8")
    assert "geoseg models quantize" in capsys.readouterr().err
    assert not out.exists()


# --- int8 -----------------------------------------------------------------------------


def test_an_int8_model_runs_and_its_file_is_checked(tmp_path: Path, scene: Path) -> None:
    directory = make_model_dir(tmp_path / "int8", encoder="mobilenet_v2", tile_size=64)
    loaded = load_model(directory)
    fp32 = export.onnx_bytes(loaded.module, 4)
    generator = np.random.default_rng(0)
    calibration = [generator.normal(size=(4, 64, 64)).astype(np.float32) for _ in range(4)]
    int8 = export.quantize_int8(fp32, calibration)
    assert int8 == export.quantize_int8(fp32, calibration)  # reproducible
    (directory / "model.int8.onnx").write_bytes(int8)
    record = ACCEPTED.model_copy(update={"int8_sha256": hashlib.sha256(int8).hexdigest()})
    update_card(directory, {"onnx": record.model_dump()})
    key = model_key(directory, "cpu")
    session = onnx_runtime.cached_session(key, "int8")
    assert onnx_runtime.cached_session(key, "int8") is session
    probabilities = onnx_runtime.session_probabilities(session, np.stack(calibration), "cpu")
    assert probabilities.shape == (4, 3, 64, 64)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    (directory / "model.int8.onnx").write_bytes(int8 + b"\0")
    with pytest.raises(ModelError, match="SHA-256 differs"):
        onnx_runtime.int8_model_bytes(directory)


@pytest.mark.gpu
def test_onnxruntime_runs_on_cuda(model_dir: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if "CUDAExecutionProvider" not in (onnx_runtime.onnxruntime_providers() or ()):
        pytest.skip("ONNX Runtime without its CUDA execution provider (onnxruntime-gpu)")
    loaded = load_model(model_dir)
    session = onnx_runtime.make_session(export.onnx_bytes(loaded.module, 4), "cuda", 1)
    assert session.get_providers()[0] == "CUDAExecutionProvider"
    inputs = np.random.default_rng(0).normal(size=(2, 4, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(loaded.module(torch.from_numpy(inputs)), dim=1).numpy()
    found = onnx_runtime.session_probabilities(session, inputs, "cuda")
    np.testing.assert_allclose(found, expected, atol=1e-3)


def test_segment_runs_onnxruntime_with_the_labels_of_predict(
    model_dir: Path, scene: Path, tmp_path: Path, scheduler: str
) -> None:
    settings = InferenceSettings(engine="onnxruntime", device="cpu", chunk_size=64)
    out = tmp_path / "labels.tif"
    with Client(scheduler, set_as_default=False) as client:
        result = predict_file(
            scene, model_dir, settings, PredictOutputs(out), client=client, progress=False
        )
    assert (result.engine, result.precision) == ("onnxruntime", "fp32")
    with rasterio.open(out) as dataset:
        expected = dataset.read(1)
    data = rioxarray.open_rasterio(scene, chunks=50)
    labels = geoseg.segment(data, model_dir, settings=replace(settings, chunk_size=100))
    with dask.config.set(scheduler="threads"):
        found = np.asarray(labels.values)
    assert np.array_equal(found, expected)
