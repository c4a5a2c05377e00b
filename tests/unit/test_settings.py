"""Inference settings: one type, validated when built, before any file is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoseg.cli import main
from geoseg.errors import ConfigError, InputError
from geoseg.predict.inference import DeviceSupport
from geoseg.predict.placement import place_inference
from geoseg.predict.settings import InferenceSettings, PredictOutputs


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"chunk_size": 0}, InputError, "chunk size"),
        ({"batch_size": 0}, InputError, "batch size"),
        ({"tile": 0}, InputError, "tile size"),
        ({"tile": 64, "overlap": 32}, InputError, "overlap must satisfy"),
        ({"overlap": -1}, InputError, "overlap must satisfy"),
        ({"device": "tpu"}, ConfigError, "unknown device"),
        ({"precision": "int4"}, ConfigError, "unknown precision"),
        ({"precision": "int8"}, ConfigError, "only on ONNX Runtime"),
        ({"engine": "tensorrt"}, ConfigError, "unknown engine"),
        ({"engine": "onnxruntime", "precision": "bf16"}, ConfigError, "fp32 or int8"),
    ],
)
def test_invalid_settings_are_refused_when_built(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        InferenceSettings(**options)  # type: ignore[arg-type]


def test_a_bad_chunk_size_is_reported_before_the_input_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.tif"
    with pytest.raises(SystemExit):
        main(["predict", str(missing), "--out", str(tmp_path / "x.tif"), "--chunk-size", "0"])
    error = capsys.readouterr().err
    assert "chunk size" in error and "no such file" not in error


def test_the_manifest_records_the_settings_and_the_resolved_placement() -> None:
    settings = InferenceSettings(tile=256)
    placement = place_inference("auto", {"a": DeviceSupport(cuda=False)})
    assert settings.output_parameters(placement) == {
        "tile": 256,
        "overlap": None,
        "device": "auto",
        "precision": "auto",
        "engine": "torch",
        "device_used": "cpu",
        "precision_used": "fp32",
        "engine_used": "torch",
    }


def test_outputs_are_paths() -> None:
    outputs = PredictOutputs("labels.tif", "probabilities.tif")  # type: ignore[arg-type]
    assert outputs.paths == (Path("labels.tif"), Path("probabilities.tif"))
    assert PredictOutputs(Path("labels.tif")).paths == (Path("labels.tif"),)
