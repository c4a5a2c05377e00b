"""Diagnostic: forest / non-forest learned inside the Zion test block itself.

Trains ``forest-landsat``'s config on the Zion scene only, on the test block's northern half
(rows 1000-1213), with early stopping on its southern half (rows 1214-1427), and scores the
network and a 60-tree random forest (200,000 pixels of the same training rows) on that
southern half. An in-domain check of the forest F1 >= 0.80 target of the default models:
it uses the test block for training, so nothing it produces is ever shipped (the model goes
to a temporary folder).

Usage: ``python benchmarks/forest_ceiling.py [--epochs 20]`` (about 14 minutes on 2 cores).

``--pixel-checks`` instead fits only random forests inside the test block, on the same scaled
bands, with and without context features (each band's mean over 5, 15 and 45 px squares), under
three splits of the block: its northern half against its southern half (as above), four column
strips (each scored by a forest fitted on the other three), and a random half of its pixels
against the other half (neighbouring pixels on both sides: an optimistic, in-domain bound).
About 3 minutes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray
from scipy.ndimage import uniform_filter

from geoseg.catalog.datadir import data_dir
from geoseg.change.metrics import scores
from geoseg.grid import PixelWindow
from geoseg.training.config import TrainConfig
from geoseg.training.holdout import (
    fit_random_forest,
    forest_block_matrix,
    network_block_matrix,
    sample_training_pixels,
)
from geoseg.training.loop import seed_everything
from geoseg.training.pipeline import class_index_names, prepare_scenes, train_from_config
from geoseg.training.sampling import read_chip
from workflows.train_defaults import CONFIG_DIR, FOREST_PIXELS, FOREST_TREES, TEST_FIRST_ROW

SPLIT_ROW = 1214
"""First row of the southern half of the test block (scored); rows above it train."""


def forest_f1(scored: Any) -> float:
    return float(scored.to_dict()["per_class"]["forest"]["f1"])


CONTEXT_SIZES = (5, 15, 45)


def block_features(context: bool) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Scaled bands (and their local means) and forest labels of the whole test block."""
    config = TrainConfig.model_validate(
        yaml.safe_load((CONFIG_DIR / "forest-landsat.yaml").read_text(encoding="utf-8"))
    )
    scene = prepare_scenes(config, data_dir())[0]
    halo = max(CONTEXT_SIZES)
    block = PixelWindow(TEST_FIRST_ROW, 0, scene.grid.height - TEST_FIRST_ROW, scene.grid.width)
    inputs, _ = read_chip(scene, block.pad(halo))  # image context only, above the block
    _, labels = read_chip(scene, block)
    layers = [inputs]
    if context:
        layers += [uniform_filter(inputs, size=(1, size, size)) for size in CONTEXT_SIZES]
    stacked = np.concatenate(layers)[:, halo : halo + block.height, halo : halo + block.width]
    return stacked.astype(np.float32), labels


def forest_f1_of_split(
    features: NDArray[np.float32],
    labels: NDArray[np.int64],
    train: NDArray[np.bool_],
    seed: int,
) -> float:
    """Forest F1 on ``~train`` of a 60-tree forest fitted on up to 200,000 ``train`` pixels."""
    flat = features.reshape(features.shape[0], -1).T
    truth = labels.ravel()
    usable = truth >= 0
    candidates = np.flatnonzero(train.ravel() & usable)
    generator = np.random.default_rng(seed)
    chosen = generator.choice(candidates, size=min(FOREST_PIXELS, candidates.size), replace=False)
    forest = fit_random_forest(flat[chosen], truth[chosen], trees=FOREST_TREES, seed=seed)
    scored = ~train.ravel() & usable
    prediction = np.asarray(forest.predict(flat[scored]), dtype=np.int64)
    hits = int(((prediction == 1) & (truth[scored] == 1)).sum())
    return 2 * hits / max(1, int((prediction == 1).sum() + (truth[scored] == 1).sum()))


def pixel_checks(seed: int = 2015) -> dict[str, Any]:
    """Forest F1 of in-block random forests (see the module docstring)."""
    results: dict[str, Any] = {}
    for context in (False, True):
        features, labels = block_features(context)
        height, width = labels.shape
        rows = np.arange(height)[:, None] + TEST_FIRST_ROW
        cols = np.arange(width)[None, :]
        north = np.broadcast_to(rows < SPLIT_ROW, labels.shape)
        strips = np.broadcast_to(cols * 4 // width, labels.shape)
        random_half = np.random.default_rng(seed).random(labels.shape) < 0.5
        key = "bands+context" if context else "bands"
        results[key] = {
            "north_to_south": round(forest_f1_of_split(features, labels, north, seed), 4),
            "column_strips": [
                round(forest_f1_of_split(features, labels, strips != strip, seed), 4)
                for strip in range(4)
            ],
            "random_pixel_halves": round(
                forest_f1_of_split(features, labels, random_half, seed), 4
            ),
        }
        print(json.dumps({key: results[key]}))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--pixel-checks", action="store_true")
    args = parser.parse_args()
    if args.pixel_checks:
        pixel_checks()
        return
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
