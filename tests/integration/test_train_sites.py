"""Training on several real scenes at once: different sensors, units, pixel sizes and labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from geoseg.predict.sources import ZoomedSource
from geoseg.training.config import TrainConfig
from geoseg.training.loop import train_model
from geoseg.training.losses import build_loss
from geoseg.training.pipeline import build_untrained, prepare_scenes
from geoseg.training.sampling import IGNORE_INDEX, read_chip, validation_chips

FOREST_MAP = {"path": "sites/class_map.csv", "column": "forest", "values": {"0": 0, "1": 1}}
PARA_L5 = "rstoolbox_para_landsat5_19880814"  # Landsat-5 DN, 30 m, polygons
WALES = "rsgislib_aberystwyth_sentinel2_20210527"  # Sentinel-2 SR x 1000, 10 m, polygons
SLOVENIA = "eolearn_slovenia_sentinel2_2015"  # Sentinel-2 TOA 0-1, 10 m, dense raster


def sites_config() -> TrainConfig:
    scenes = [
        {
            "image": f"sites/{PARA_L5}/image.tif",
            "sparse_labels": {"path": f"sites/{PARA_L5}/labels.gpkg", "layer": "labels"},
            "class_map": {**FOREST_MAP, "site": PARA_L5},
            # a small window around the polygons; validation beside it
            "train_windows": [{"row": 0, "col": 0, "height": 200, "width": 287}],
            "validation_windows": [{"row": 200, "col": 0, "height": 110, "width": 287}],
        },
        {
            "image": f"sites/{WALES}/image.tif",
            "sparse_labels": {"path": f"sites/{WALES}/labels.gpkg", "layer": "labels"},
            "class_map": {**FOREST_MAP, "site": WALES},
            "train_windows": [{"row": 0, "col": 0, "height": 160, "width": 310}],
        },
        {
            "image": f"sites/{SLOVENIA}/image_20150711.tif",
            "dense_labels": {"path": f"sites/{SLOVENIA}/labels.tif"},
            "class_map": {**FOREST_MAP, "site": SLOVENIA},
        },
    ]
    return TrainConfig.model_validate(
        {
            "name": "tiny-sites",
            "architecture": "segnet",
            "architecture_options": {"widths": [8, 16], "convs": 1},
            "bands": [{"name": name} for name in ("blue", "green", "red", "nir")],
            "scaling": {"units": "any", "method": "scene_percentile"},
            "classes": [
                {"id": 0, "name": "non-forest", "color": "#e6d9a8"},
                {"id": 1, "name": "forest", "color": "#1c5f2c"},
            ],
            "resampling": "card_pixel_size",
            "pixel_size_m": 30.0,
            "scenes": scenes,
            "chip_size": 32,
            "batch_size": 8,
            "chips_per_epoch": 64,
            "epochs": 6,
            "loss": ["cross_entropy"],
            "learning_rate": 0.01,
            "chip_sampling": "class_balanced",
            "early_stopping_patience": 6,
            "seed": 3,
            "threads": 1,
            "tile_size": 64,
            "overlap": 8,
        }
    )


def labelled_loss(module: torch.nn.Module, config: TrainConfig, root: Path) -> float:
    """Cross-entropy over 32 px chips covering every scene whole (its labelled pixels)."""
    scenes = prepare_scenes(config, root)
    chips = [
        read_chip(scene, chip)
        for scene, chip, _ in validation_chips(
            [
                type(scene)(**{**scene.__dict__, "validation_windows": (scene.grid.full_window,)})
                for scene in scenes
            ],
            32,
        )
    ]
    chips = [chip for chip in chips if (chip[1] != IGNORE_INDEX).any()]
    inputs = torch.from_numpy(np.stack([chip[0] for chip in chips]))
    labels = torch.from_numpy(np.stack([chip[1] for chip in chips]))
    module.eval()
    with torch.inference_mode():
        return float(build_loss(config.loss, ignore_index=IGNORE_INDEX)(module(inputs), labels))


@pytest.mark.slow
def test_multi_site_training_lowers_the_loss(shared_data: Path) -> None:
    config = sites_config()
    scenes = prepare_scenes(config, shared_data)
    # units differ (DN, SR x 1000, TOA) and two scenes are 10 m, read at 30 m
    assert [type(scene.source) is ZoomedSource for scene in scenes] == [False, True, True]
    assert scenes[2].grid.shape == (34, 34)
    module = build_untrained(config)
    before = labelled_loss(module, config, shared_data)
    result = train_model(module, scenes, config, progress=False)
    after = labelled_loss(module, config, shared_data)
    # over every labelled pixel of the three scenes (training and validation windows)
    assert after < before - 0.05, (before, after)
    history = [record.train_loss for record in result.history]
    assert history[-1] < 0.6 * history[0], history
