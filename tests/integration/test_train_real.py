"""A short real training run on a small window of the Zion scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from geoseg.cli import cli
from geoseg.io.checkpoint import read_card
from geoseg.models.loading import load_model
from geoseg.training.config import TrainConfig
from geoseg.training.loop import train_model
from geoseg.training.losses import build_loss
from geoseg.training.pipeline import build_untrained, prepare_scenes
from geoseg.training.sampling import IGNORE_INDEX, read_validation_chip, validation_chips

ZION = {
    "image": "zion/zion_landsat8_20150818_b2345.tif",
    "band_indexes": [1, 2, 3, 4],
    "dense_labels": {"path": "zion/nlcd_generalized_on_landsat_grid.tif"},
    "train_windows": [{"row": 100, "col": 300, "height": 96, "width": 128}],
    "validation_windows": [{"row": 196, "col": 300, "height": 32, "width": 128}],
}


def tiny_config(**changes: object) -> dict[str, object]:
    return {
        "name": "tiny-zion",
        "architecture": "segnet",
        "architecture_options": {"widths": [8, 16], "convs": 1},
        "bands": [{"name": name} for name in ("blue", "green", "red", "nir")],
        "scaling": {"units": "dn", "method": "scene_percentile"},
        "classes": [
            {"id": class_id, "name": f"c{class_id}", "color": "#123456"} for class_id in range(1, 9)
        ],
        "scenes": [ZION],
        "chip_size": 32,
        "batch_size": 8,
        "chips_per_epoch": 32,
        "epochs": 4,
        "learning_rate": 0.01,
        "early_stopping_patience": 4,
        "seed": 7,
        "threads": 1,
        "tile_size": 64,
        "overlap": 8,
        **changes,
    }


def fixed_batch_loss(module: torch.nn.Module, config: TrainConfig, root: Path) -> float:
    scenes = prepare_scenes(config, root)
    chips = [read_validation_chip(*item) for item in validation_chips(scenes, 32)]
    inputs = torch.from_numpy(np.stack([chip[0] for chip in chips]))
    labels = torch.from_numpy(np.stack([chip[1] for chip in chips]))
    module.eval()
    with torch.inference_mode():
        return float(build_loss(config.loss, ignore_index=IGNORE_INDEX)(module(inputs), labels))


@pytest.mark.slow
def test_training_lowers_the_loss_and_is_reproducible(shared_data: Path) -> None:
    config = TrainConfig.model_validate(tiny_config())
    scenes = prepare_scenes(config, shared_data)
    first = build_untrained(config)
    before = fixed_batch_loss(first, config, shared_data)
    result = train_model(first, scenes, config, progress=False)
    after = fixed_batch_loss(first, config, shared_data)
    assert after < before - 0.1, (before, after)
    assert len(result.history) >= 1
    assert result.history[-1].validation_iou  # per-class IoU recorded each epoch

    second = build_untrained(config)
    repeat = train_model(second, scenes, config, progress=False)
    for name, tensor in result.state_dict.items():
        torch.testing.assert_close(repeat.state_dict[name], tensor, rtol=0, atol=0)


@pytest.mark.slow
def test_train_command_writes_a_loadable_model(shared_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(tiny_config(epochs=1, chips_per_epoch=8)))
    out = tmp_path / "model"
    outcome = CliRunner().invoke(
        cli,
        [
            "train",
            "--config",
            str(path),
            "--out",
            str(out),
            "--data-root",
            str(shared_data),
            "--no-progress",
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    card = read_card(out)
    assert card.metrics["validation"]["pixels"] > 0
    assert card.training.epochs == 1
    assert card.cpu_bf16_agreement is not None and 0.5 <= card.cpu_bf16_agreement <= 1.0
    assert card.onnx is not None and card.onnx.fp32_agreement >= 0.999  # SegNet: torch.export
    assert card.onnx.int8_agreement is not None
    assert (out / "model.int8.onnx").exists() == (card.onnx.int8_file is not None)
    loaded = load_model(out)
    assert loaded.card.band_names == ["blue", "green", "red", "nir"]
