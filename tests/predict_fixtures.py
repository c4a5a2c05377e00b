"""Tiny seeded models and rasters shared by the prediction tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from geoseg.io.checkpoint import write_model_dir
from geoseg.models.card import ModelCard
from geoseg.models.registry import register_architecture

FIXED_CONV = "geoseg-test-fixed-conv"
BANDS = ["blue", "green", "red", "nir"]
CLASSES = [
    {"id": 1, "name": "water", "color": "#1f78b4"},
    {"id": 4, "name": "forest", "color": "#33a02c"},
    {"id": 5, "name": "shrubland", "color": "#b2df8a"},
]


def build_fixed_conv(in_channels: int, num_classes: int, **_: Any) -> nn.Module:
    """A single 3x3 convolution: exactly translation-equivariant, receptive radius 1."""
    return nn.Conv2d(in_channels, num_classes, kernel_size=3, padding=1)


register_architecture(FIXED_CONV, build_fixed_conv)


def card_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "test-model",
        "architecture": "unet",
        "encoder": "resnet18",
        "architecture_options": {"encoder_depth": 3, "decoder_channels": [32, 16, 8]},
        "bands": [{"name": name} for name in BANDS],
        "scaling": {"units": "digital numbers", "method": "scene_percentile"},
        "classes": CLASSES,
        "pixel_size_m": 30.0,
        "tile_size": 64,
        "overlap": 16,
        "weights_sha256": "0" * 64,
    }
    data.update(overrides)
    return data


def make_model_dir(directory: Path, seed: int = 7, **overrides: Any) -> Path:
    """Write a seeded, randomly initialised model directory and return it."""
    from geoseg.models.loading import build_from_card

    card = ModelCard.model_validate(card_data(**overrides))
    torch.manual_seed(seed)
    module = build_from_card(card)
    if card.architecture == FIXED_CONV:
        with torch.no_grad():
            module.weight.copy_(torch.randn_like(module.weight))
            module.bias.copy_(torch.randn_like(module.bias))
    else:
        # spread batch-norm statistics so a random model gives varied labels
        for layer in module.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.running_mean.normal_(0, 0.1)
    write_model_dir(directory, module.state_dict(), card)
    return directory


def make_fixed_conv_dir(directory: Path, seed: int = 3) -> Path:
    return make_model_dir(
        directory,
        seed=seed,
        name="fixed-conv",
        architecture=FIXED_CONV,
        encoder="",
        architecture_options={},
        tile_size=48,
        overlap=16,
    )


def make_maskrcnn_dir(
    directory: Path, seed: int = 0, *, bands: tuple[str, ...] = ("panchromatic",), **overrides: Any
) -> Path:
    """A seeded, randomly initialised tiny Mask R-CNN (fpn 16) instance model directory.

    Its random heads score near 0.5, so a low ``min_score`` gives detections.
    """
    data = card_data(
        name="test-maskrcnn",
        task="instance",
        architecture="maskrcnn",
        encoder="",
        architecture_options={"fpn_channels": 16},
        bands=[{"name": name} for name in bands],
        classes=[{"id": 1, "name": "building", "color": "#ff0000"}],
        pixel_size_m=0.5,
    )
    data.update(overrides)
    return make_model_dir(directory, seed=seed, **data)
