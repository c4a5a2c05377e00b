from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from geoseg.errors import ConfigError, ModelError
from geoseg.predict import inference
from tests.predict_fixtures import make_model_dir


def test_device_selection() -> None:
    assert inference.select_device("cpu") == "cpu"
    assert inference.select_device("auto") in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        inference.select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            inference.select_device("cuda")


def test_precision_selection() -> None:
    assert inference.select_precision("auto", "cpu") == "fp32"
    assert inference.select_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ConfigError, match="fp16"):
        inference.select_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="unknown precision"):
        inference.select_precision("int4", "cpu")
    with pytest.raises(ConfigError, match="only on ONNX Runtime"):
        inference.select_precision("int8", "cpu")


@pytest.mark.parametrize(
    ("agreement", "native", "expected"),
    [
        (None, True, "fp32"),  # not measured
        (0.99, True, "fp32"),  # below the bar
        (0.998, False, "fp32"),  # emulated bf16 is not faster
        (0.998, True, "bf16"),
        (inference.AUTO_CPU_BF16_AGREEMENT, True, "bf16"),
    ],
)
def test_auto_precision_on_cpu_follows_the_card_and_the_cpu(
    monkeypatch: pytest.MonkeyPatch, agreement: float | None, native: bool, expected: str
) -> None:
    monkeypatch.setattr(inference, "native_cpu_bf16", lambda: native)
    assert inference.select_precision("auto", "cpu", agreement) == expected
    # an explicit choice is kept whatever the card says
    assert inference.select_precision("fp32", "cpu", agreement) == "fp32"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "m")


def test_forward_gives_probabilities_and_is_cached(model_dir: Path) -> None:
    key = inference.model_key(model_dir, "cpu")
    before = inference.model_loads()
    loaded = inference.cached_model(key)
    assert inference.cached_model(inference.model_key(model_dir, "cpu")) is loaded
    assert inference.model_loads() - before == 1
    batch = np.random.default_rng(0).random((3, 4, 64, 64), dtype=np.float32)
    probabilities = inference.forward_probabilities(loaded, batch, "cpu", "fp32")
    assert probabilities.shape == (3, 3, 64, 64) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    single = inference.forward_probabilities(loaded, batch[1:2], "cpu", "fp32")
    np.testing.assert_allclose(single[0], probabilities[1], atol=1e-5)
    mixed = inference.forward_probabilities(loaded, batch, "cpu", "bf16")
    assert mixed.dtype == np.float32 and mixed.shape == probabilities.shape


class _Refuses(torch.nn.Module):
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("Wrong input shape height=50, width=50")


def test_a_model_refusing_the_tile_shape_is_a_model_error(model_dir: Path) -> None:
    loaded = inference.cached_model(inference.model_key(model_dir, "cpu"))
    refusing = inference.LoadedModel(_Refuses(), loaded.card, loaded.directory)
    with pytest.raises(ModelError, match=r"tiles of shape \(50, 50\).*tile size"):
        inference.forward_probabilities(
            refusing, np.zeros((1, 4, 50, 50), dtype=np.float32), "cpu", "fp32"
        )


class _Recording(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.passes: list[int] = []

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        self.passes.append(int(inputs.shape[0]))
        output: torch.Tensor = self.inner(inputs)
        return output


def test_a_cpu_batch_runs_a_few_tiles_per_forward_pass(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = inference.cached_model(inference.model_key(model_dir, "cpu"))
    recording = _Recording(loaded.module)
    counted = inference.LoadedModel(recording, loaded.card, loaded.directory)
    batch = np.random.default_rng(1).random((5, 4, 64, 64), dtype=np.float32)
    monkeypatch.setattr(inference, "CPU_FORWARD_TILES", 2)
    probabilities = inference.forward_probabilities(counted, batch, "cpu", "fp32")
    assert recording.passes == [2, 2, 1]
    for index in range(5):  # each tile's values are those of its own pass
        alone = inference.forward_probabilities(counted, batch[index : index + 1], "cpu", "fp32")
        np.testing.assert_allclose(probabilities[index], alone[0], atol=1e-5)
    monkeypatch.setattr(inference, "CPU_FORWARD_TILES", 1)
    recording.passes.clear()
    inference.forward_probabilities(counted, batch[:3], "cpu", "fp32")
    assert recording.passes == [1, 1, 1]
