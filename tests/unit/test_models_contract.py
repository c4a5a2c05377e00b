"""Every registered architecture: builds, forward shape, safetensors round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geoseg.errors import ModelError
from geoseg.io.checkpoint import write_model_dir
from geoseg.models.card import ModelCard
from geoseg.models.loading import load_model
from geoseg.models.registry import architectures, build_model

LIGHT_ENCODER = "mobilenet_v2"
SIZE = 128  # the smallest side every smp architecture accepts with this encoder


def card_for(architecture: str, encoder: str, options: dict[str, object]) -> ModelCard:
    return ModelCard(
        name=f"test-{architecture}",
        architecture=architecture,
        encoder=encoder,
        architecture_options=options,
        bands=[{"name": name} for name in ("blue", "green", "red", "nir")],
        scaling={"units": "dn", "method": "scene_percentile"},
        classes=[
            {"id": 0, "name": "a", "color": "#000000"},
            {"id": 1, "name": "b", "color": "#ffffff"},
            {"id": 7, "name": "c", "color": "#00ff00"},
        ],
        pixel_size_m=30.0,
        tile_size=64,
        overlap=8,
        weights_sha256="0" * 64,
    )


@pytest.mark.parametrize("architecture", architectures("semantic"))
def test_architecture_contract(architecture: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    options: dict[str, object] = {"widths": [8, 16]} if architecture == "segnet" else {}
    encoder = "" if architecture == "segnet" else LIGHT_ENCODER
    model = build_model(
        architecture, encoder=encoder, in_channels=4, num_classes=3, options=options
    ).eval()
    inputs = torch.rand(1, 4, SIZE, SIZE)
    with torch.inference_mode():
        expected = model(inputs)
    assert expected.shape == (1, 3, SIZE, SIZE)

    card = write_model_dir(tmp_path, model.state_dict(), card_for(architecture, encoder, options))
    loaded = load_model(tmp_path)
    assert loaded.card == card
    with torch.inference_mode():
        torch.testing.assert_close(loaded.module(inputs), expected, rtol=0, atol=0)


def test_unknown_architecture_lists_the_valid_ones() -> None:
    with pytest.raises(ModelError, match=r"valid names: .*segnet.*unet"):
        build_model("transformer9000", in_channels=4, num_classes=2)


def test_unknown_encoder_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="unknown encoder"):
        build_model("unet", encoder="resnet9000", in_channels=4, num_classes=2)


def test_segnet_any_tile_size_and_bad_options() -> None:
    model = build_model("segnet", in_channels=4, num_classes=5, options={"widths": [4, 8, 16]})
    assert model(torch.rand(2, 4, 37, 50)).shape == (2, 5, 37, 50)
    with pytest.raises(ModelError, match="widths"):
        build_model("segnet", in_channels=4, num_classes=2, options={"widths": []})
