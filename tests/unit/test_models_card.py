from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from geoseg.errors import BandMismatchError, ChecksumError, ModelError
from geoseg.io.checkpoint import read_card, write_model_dir
from geoseg.models.card import ModelCard
from geoseg.models.loading import load_model
from geoseg.models.registry import build_model
from geoseg.predict.preprocess import resolve_band_indexes
from tests.unit.test_models_contract import card_for


def _segnet_dir(tmp_path: Path) -> tuple[Path, ModelCard]:
    torch.manual_seed(1)
    options: dict[str, object] = {"widths": [4, 8]}
    model = build_model("segnet", in_channels=4, num_classes=3, options=options)
    card = write_model_dir(tmp_path, model.state_dict(), card_for("segnet", "", options))
    return tmp_path, card


def test_card_rejects_unknown_keys_and_bad_values() -> None:
    good = card_for("segnet", "", {}).model_dump()
    with pytest.raises(ValueError, match="extra"):
        ModelCard.model_validate({**good, "colour_scheme": "x"})
    with pytest.raises(ValueError, match="unique"):
        ModelCard.model_validate({**good, "classes": [good["classes"][0]] * 2})
    with pytest.raises(ValueError, match="colour"):
        bad = dict(good["classes"][0], color="green")
        ModelCard.model_validate({**good, "classes": [bad]})
    with pytest.raises(ValueError, match="overlap"):
        ModelCard.model_validate({**good, "overlap": 40})
    with pytest.raises(ValueError, match="cpu_bf16_agreement"):
        ModelCard.model_validate({**good, "cpu_bf16_agreement": 1.2})


def test_invalid_card_file_names_the_file(tmp_path: Path) -> None:
    directory, _ = _segnet_dir(tmp_path)
    data = json.loads((directory / "card.json").read_text())
    del data["bands"]
    (directory / "card.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"(?s)card\.json.*bands"):
        read_card(directory)


def test_hash_mismatch_is_refused(tmp_path: Path) -> None:
    directory, _ = _segnet_dir(tmp_path)
    weights = directory / "weights.safetensors"
    content = bytearray(weights.read_bytes())
    content[-1] ^= 0xFF
    weights.write_bytes(bytes(content))
    with pytest.raises(ChecksumError, match="does not match the card"):
        load_model(directory)


def test_round_trip_keeps_the_card(tmp_path: Path) -> None:
    directory, card = _segnet_dir(tmp_path)
    loaded = load_model(directory)
    assert loaded.card == card
    assert len(card.weights_sha256) == 64


def test_band_mismatch_names_the_missing_band() -> None:
    card = card_for("segnet", "", {})
    with pytest.raises(BandMismatchError, match=r"\['nir'\] are missing"):
        resolve_band_indexes("rgb.tif", card.band_names, ["red", "green", "blue"])
    assert resolve_band_indexes("x.tif", card.band_names, ["red", "nir", "blue", "green"]) == [
        3,
        4,
        1,
        2,
    ]


def test_float16_weights_are_half_the_size_and_load_as_float32(tmp_path: Path) -> None:
    torch.manual_seed(1)
    options: dict[str, object] = {"widths": [16, 32]}
    model = build_model("segnet", in_channels=4, num_classes=3, options=options).eval()
    full = write_model_dir(tmp_path / "full", model.state_dict(), card_for("segnet", "", options))
    half_card = card_for("segnet", "", options).model_copy(update={"weights_dtype": "float16"})
    half = write_model_dir(tmp_path / "half", model.state_dict(), half_card)
    assert half.weights_dtype == "float16"
    full_size = (tmp_path / "full" / full.weights_file).stat().st_size
    half_size = (tmp_path / "half" / half.weights_file).stat().st_size
    assert half_size < 0.6 * full_size
    loaded = load_model(tmp_path / "half")
    parameters = dict(loaded.module.named_parameters())
    assert all(value.dtype == torch.float32 for value in parameters.values())
    for name, value in model.named_parameters():
        assert torch.equal(parameters[name], value.detach().half().float())
    inputs = torch.rand(1, 4, 32, 32)
    with torch.inference_mode():
        assert torch.allclose(loaded.module(inputs), model(inputs), atol=1e-2)


def _held_out() -> dict[str, object]:
    region = {"kappa": 0.6, "f1": 0.8, "iou": 0.7, "pixels": 10, "forest_pixels": 4}
    return {
        "definition": "leave-one-region-out",
        "Wales": region,
        "Para": {**region, "kappa": 0.4},
        "mean": {"kappa": 0.5, "f1": 0.8, "iou": 0.7},
        "worst": {"kappa": 0.4, "f1": 0.8, "iou": 0.7, "region": "Para"},
    }


def test_held_out_regions_are_typed() -> None:
    good = card_for("segnet", "", {}).model_dump()
    held_out = _held_out()
    card = ModelCard.model_validate(
        {**good, "metrics": {"held_out_regions": {**held_out, "random_forest_baseline": held_out}}}
    )
    scores = card.held_out_regions
    assert scores is not None
    assert set(scores) == {"Wales", "Para", "mean", "worst"}
    assert scores["worst"].region == "Para"
    assert scores["Para"].kappa == 0.4
    assert card_for("segnet", "", {}).held_out_regions is None


@pytest.mark.parametrize(
    "broken",
    [
        {"mean": None},  # no mean entry
        {"Wales": {"kappa": 0.6, "f1": 1.5, "iou": 0.7}},  # F1 out of range
        {"Wales": {"kappa": 0.6, "iou": 0.7}},  # no F1
        {"Wales": None, "Para": None},  # no region at all
    ],
)
def test_held_out_regions_malformed_is_refused(broken: dict[str, object]) -> None:
    held_out = {**_held_out(), **broken}
    held_out = {key: value for key, value in held_out.items() if value is not None}
    good = card_for("segnet", "", {}).model_dump()
    with pytest.raises(ValueError, match=r"held_out_regions|f1"):
        ModelCard.model_validate({**good, "metrics": {"held_out_regions": held_out}})
