"""Mask R-CNN in the registry: card task, safetensors round trip, options checked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from geoseg.errors import ModelError
from geoseg.io.checkpoint import write_model_dir
from geoseg.models.card import ModelCard
from geoseg.models.loading import build_from_card, load_model
from geoseg.models.registry import architecture_task, architectures, build_model


def instance_card(task: str = "instance") -> ModelCard:
    return ModelCard.model_validate(
        {
            "name": "test-maskrcnn",
            "task": task,
            "architecture": "maskrcnn",
            "architecture_options": {"fpn_channels": 16},
            "bands": [{"name": "panchromatic"}],
            "scaling": {"units": "dn", "method": "scene_percentile"},
            "classes": [{"id": 1, "name": "building", "color": "#ff0000"}],
            "pixel_size_m": 0.5,
            "tile_size": 64,
            "overlap": 16,
            "weights_sha256": "0" * 64,
        }
    )


def test_card_task_defaults_to_semantic_and_is_validated() -> None:
    data = instance_card().model_dump()
    del data["task"]
    assert ModelCard.model_validate(data).task == "semantic"
    with pytest.raises(ValidationError, match="task"):
        ModelCard.model_validate({**data, "task": "panoptic-ish"})


def test_maskrcnn_is_the_instance_architecture() -> None:
    assert architectures("instance") == ["maskrcnn"]
    assert "maskrcnn" not in architectures("semantic")
    assert architecture_task("MaskRCNN") == "instance"
    with pytest.raises(ModelError, match="set task to 'instance'"):
        build_from_card(instance_card("semantic"))


def test_maskrcnn_round_trip_gives_the_same_detections(tmp_path: Path) -> None:
    torch.manual_seed(0)
    card = instance_card()
    model = build_from_card(card).eval()
    image = torch.rand(1, 64, 64)
    with torch.inference_mode():
        expected = model([image])[0]
    assert set(expected) == {"boxes", "labels", "scores", "masks"}
    written = write_model_dir(tmp_path, model.state_dict(), card)
    loaded = load_model(tmp_path)
    assert loaded.card == written
    with torch.inference_mode():
        got = loaded.module([image])[0]
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0)


def test_maskrcnn_rejects_unknown_options() -> None:
    with pytest.raises(ModelError, match="valid: fpn_channels"):
        build_model("maskrcnn", in_channels=1, num_classes=1, options={"depth": 50})
    with pytest.raises(ModelError, match="anchor_sizes"):
        build_model("maskrcnn", in_channels=1, num_classes=1, options={"anchor_sizes": [8]})
