"""Diagnostic: forest / non-forest learned inside the Zion test block itself.

Trains ``forest-landsat``'s config on the Zion scene only, on the test block's northern half
(rows 1000-1213), with early stopping on its southern half (rows 1214-1427), and scores the
network and a 60-tree random forest (200,000 pixels of the same training rows) on that
southern half. An in-domain check of the forest F1 >= 0.80 target of the default models:
it uses the test block for training, so nothing it produces is ever shipped (the model goes
to a temporary folder).

Usage: ``python benchmarks/forest_ceiling.py [--epochs 20]`` (about 14 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from geoseg.datadir import data_dir
from geoseg.grid import PixelWindow
from geoseg.metrics import scores
from geoseg.training.config import TrainConfig
from geoseg.training.holdout import (
    fit_random_forest,
    forest_block_matrix,
    network_block_matrix,
    sample_training_pixels,
)
from geoseg.training.loop import seed_everything
from geoseg.training.pipeline import class_index_names, train_from_config
from workflows.train_defaults import CONFIG_DIR, FOREST_PIXELS, FOREST_TREES, TEST_FIRST_ROW

SPLIT_ROW = 1214
"""First row of the southern half of the test block (scored); rows above it train."""


def forest_f1(scored: Any) -> float:
    return float(scored.to_dict()["per_class"]["forest"]["f1"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    raw = yaml.safe_load((CONFIG_DIR / "forest-landsat.yaml").read_text(encoding="utf-8"))
    zion = raw["scenes"][0]
    width = 1128
    zion["train_windows"] = [
        {"row": TEST_FIRST_ROW, "col": 0, "height": SPLIT_ROW - TEST_FIRST_ROW, "width": width}
    ]
    zion["validation_windows"] = [{"row": SPLIT_ROW, "col": 0, "height": 214, "width": width}]
    zion["weight"] = 1.0
    raw.update(name="forest-ceiling-diagnostic", scenes=[zion], epochs=args.epochs)
    config = TrainConfig.model_validate(raw)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="geoseg-ceiling-") as folder:
        trained = train_from_config(
            config,
            data_dir(),
            Path(folder) / "model",
            command="diagnostic",
            progress=False,
            log=print,
        )
    scene = trained.scenes[0]
    block = PixelWindow(SPLIT_ROW, 0, scene.grid.height - SPLIT_ROW, scene.grid.width)
    names = class_index_names(config)
    network = scores(network_block_matrix(trained.module, scene, block, len(names)), names)
    generator = seed_everything(config.seed)
    features, labels = sample_training_pixels(trained.scenes, FOREST_PIXELS, generator)
    forest = fit_random_forest(features, labels, trees=FOREST_TREES, seed=config.seed)
    baseline = scores(forest_block_matrix(forest, scene, block, len(names)), names)
    result = {
        "scored_rows": f"{SPLIT_ROW}-{scene.grid.height - 1}",
        "network_forest_f1": round(forest_f1(network), 4),
        "random_forest_forest_f1": round(forest_f1(baseline), 4),
        "seconds": round(time.perf_counter() - started),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
