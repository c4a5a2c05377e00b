"""Instance training parts: chips drawn around objects, the group-normalised detector."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import torch
from shapely.geometry import box
from torch import nn

from geoseg.errors import ModelError
from geoseg.models.card import InputScaling
from geoseg.models.maskrcnn import build_maskrcnn
from geoseg.training.config import TrainConfig
from geoseg.training.instances import (
    chip_targets,
    draw_chips,
    rasterize_instances,
    train_instances,
)
from geoseg.training.pipeline import build_untrained
from geoseg.training.sampling import TrainingScene, index_class_pixels, prepare_scene
from tests.conftest import ORIGIN, coordinate_image

SCALING = InputScaling(units="dn", method="scene_percentile", percentiles=(0.0, 100.0))


def _one_object_scene(make_geotiff: Callable[..., Path], tmp_path: Path) -> TrainingScene:
    """A 64 x 64 px scene with one 6 x 6 px object at rows 50-55, columns 4-9."""
    image = make_geotiff(coordinate_image(1, 64, 64), name="image.tif")
    vector = tmp_path / "objects.gpkg"
    gpd.GeoDataFrame(
        {"class": ["building"]},
        geometry=[
            box(ORIGIN[0] + 4 * 30, ORIGIN[1] - 56 * 30, ORIGIN[0] + 10 * 30, ORIGIN[1] - 50 * 30)
        ],
        crs="EPSG:32612",
    ).to_file(vector)
    config = _config(image, vector, "uniform")
    return prepare_scene(config.scenes[0], ["pan"], [1], SCALING, tmp_path)


def _config(image: Path, vector: Path, sampling: str, **extra: object) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "architecture_options": {"fpn_channels": 16},
            "batch_size": 2,
            "chips_per_epoch": 2,
            "epochs": 1,
            "threads": 1,
            "name": "objects",
            "task": "instance",
            "architecture": "maskrcnn",
            "bands": [{"name": "pan"}],
            "scaling": SCALING.model_dump(),
            "classes": [{"id": 1, "name": "building", "color": "#ff0000"}],
            "scenes": [
                {
                    "image": str(image),
                    "band_indexes": [1],
                    "sparse_labels": {"path": str(vector), "codes": {"building": 1}},
                    "train_windows": [{"row": 0, "col": 0, "height": 64, "width": 48}],
                    "validation_windows": [{"row": 0, "col": 48, "height": 16, "width": 16}],
                }
            ],
            "chip_size": 16,
            "chip_sampling": sampling,
            "class_balance_power": 1.0,
            **extra,
        }
    )


def test_class_balanced_instance_chips_all_hold_the_object(
    make_geotiff: Callable[..., Path], tmp_path: Path
) -> None:
    scene = _one_object_scene(make_geotiff, tmp_path)
    image, vector = tmp_path / "image.tif", tmp_path / "objects.gpkg"
    pixels = [index_class_pixels(scene, 1)]
    assert pixels[0].counts.tolist() == [36]
    balanced = draw_chips(
        [scene], pixels, 100, _config(image, vector, "class_balanced"), np.random.default_rng(0)
    )
    uniform = draw_chips(
        [scene], None, 100, _config(image, vector, "uniform"), np.random.default_rng(0)
    )
    for _, window in balanced:
        assert window.row >= 0 and window.row_stop <= 64 and window.col_stop <= 48
        assert (rasterize_instances(scene, window) == 1).any()
    holding = sum(int(rasterize_instances(scene, w).any()) for _, w in uniform)
    assert holding < 50  # uniform chips mostly miss a small object in a corner


def test_group_norm_detector_has_no_batch_statistics_and_trains() -> None:
    torch.manual_seed(0)
    model = build_maskrcnn(in_channels=1, num_classes=1, fpn_channels=16, norm="group")
    kinds = {type(module) for module in model.modules()}
    assert nn.GroupNorm in kinds
    assert not any(issubclass(kind, nn.modules.batchnorm._BatchNorm) for kind in kinds)
    assert not [name for name in model.state_dict() if "running" in name]
    ids = np.zeros((64, 64), dtype=np.int64)
    ids[10:30, 12:40] = 1
    model.train()
    losses = model([torch.rand(1, 64, 64)], [chip_targets(ids, [0])])
    assert all(torch.isfinite(value) for value in losses.values())
    batch = build_maskrcnn(in_channels=1, num_classes=1, fpn_channels=16)
    assert any(isinstance(module, nn.BatchNorm2d) for module in batch.modules())


def test_unknown_norm_is_refused() -> None:
    with pytest.raises(ModelError, match="norm must be one of"):
        build_maskrcnn(in_channels=1, num_classes=1, norm="layer")


def test_radiometric_jitter_reaches_instance_training(
    make_geotiff: Callable[..., Path], tmp_path: Path
) -> None:
    scene = _one_object_scene(make_geotiff, tmp_path)
    image, vector = tmp_path / "image.tif", tmp_path / "objects.gpkg"

    def first_loss(**extra: object) -> float:
        config = _config(image, vector, "class_balanced", **extra)
        return train_instances(build_untrained(config), [scene], config).epoch_losses[0]

    plain = first_loss()
    assert first_loss() == plain  # same seed, same chips, same loss
    assert first_loss(radiometric_jitter={"gain_std": 0.5, "offset_std": 0.5}) != plain
