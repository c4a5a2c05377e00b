"""Reproduce the shipped default models and score them on the Zion test block.

``python -m workflows.train_defaults`` (``make train-default``) trains
``landcover-landsat`` and ``forest`` from ``workflows/configs/`` into
``geoseg/models/weights/``, then, in the same run, fits a per-pixel random
forest (60 trees) on pixels drawn from exactly the same training windows and
scaled bands, and scores both on the test block: the Zion grid's rows 1000 and
below (0-based), never used for training or model selection. Both sets of
scores go into each model's card and are printed side by side. A model selected
by leave-one-region-out (``benchmarks/held_out_regions.py``) also gets its
held-out-region scores, read from the folds logged in
``docs/held_out_regions.jsonl``, as ``metrics.held_out_regions``.

``forest-landsat`` (the earlier Landsat-only forest model, trained on Zion and
Chiapas) is no longer retrained by default; ``python -m workflows.train_defaults
forest-landsat`` still reproduces it from its config.

``--domain-only`` trains nothing: it writes the training domain (the
distribution of the scaled inputs of the configs' training windows, pixel
sizes, sensors; :mod:`geoseg.training.domain`) into the existing cards, weights
untouched.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from geoseg.catalog.datadir import data_dir
from geoseg.change.metrics import scores
from geoseg.grid import PixelWindow
from geoseg.models.loading import SHIPPED_DIR
from geoseg.training.config import TrainConfig, load_train_config
from geoseg.training.holdout import (
    fit_random_forest,
    forest_block_matrix,
    network_block_matrix,
    sample_training_pixels,
    summarise_regions,
)
from geoseg.training.loop import seed_everything
from geoseg.training.pipeline import (
    TrainedModel,
    add_metrics,
    class_index_names,
    record_training_domain,
    train_from_config,
)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_MODELS = ("landcover-landsat", "forest")
TEST_FIRST_ROW = 1000
"""Zion rows from this 0-based index down are the test block."""
FOREST_TREES = 60
FOREST_PIXELS = 200_000
HELD_OUT_LOG = Path(__file__).resolve().parent.parent / "docs" / "held_out_regions.jsonl"
"""Fold records of ``benchmarks/held_out_regions.py`` (one JSON line per region and candidate)."""
HELD_OUT_CANDIDATES = {"forest": "pixel"}
"""Shipped model name -> the candidate of ``benchmarks/held_out_regions.py`` its config is."""


def _summary(scored: dict[str, Any], forest_name: str) -> dict[str, Any]:
    per_class = scored["per_class"]
    return {
        "mean_iou": scored["mean_iou"],
        "overall_accuracy": scored["overall_accuracy"],
        "forest_f1": per_class[forest_name]["f1"],
        "per_class_iou": {name: values["iou"] for name, values in per_class.items()},
    }


def score_test_block(trained: TrainedModel, config: TrainConfig) -> dict[str, Any]:
    """The model and a random forest (same training pixels) on the Zion test block.

    The config's first scene is Zion; the forest is fitted on pixels drawn from
    the training windows of every scene, with the same scaled bands.
    """
    zion = trained.scenes[0]
    block = PixelWindow(TEST_FIRST_ROW, 0, zion.grid.height - TEST_FIRST_ROW, zion.grid.width)
    names = class_index_names(config)
    network = scores(network_block_matrix(trained.module, zion, block, len(names)), names)
    started = time.perf_counter()
    generator = seed_everything(config.seed)
    features, labels = sample_training_pixels(trained.scenes, FOREST_PIXELS, generator)
    forest = fit_random_forest(features, labels, trees=FOREST_TREES, seed=config.seed)
    baseline = scores(forest_block_matrix(forest, zion, block, len(names)), names)
    forest_seconds = time.perf_counter() - started
    model_scores: dict[str, Any] = network.to_dict()
    baseline_scores: dict[str, Any] = {
        "description": f"scikit-learn RandomForestClassifier, {FOREST_TREES} trees, "
        f"{labels.size} pixels drawn from the same training windows, same scaled bands",
        "training_seconds": round(forest_seconds, 1),
        **baseline.to_dict(),
    }
    return {
        "test_block": {
            "definition": f"Zion grid rows {TEST_FIRST_ROW}-{zion.grid.height - 1} (0-based), "
            f"all {zion.grid.width} columns",
            "model": model_scores,
            "random_forest_baseline": baseline_scores,
        }
    }


def held_out_record(candidate: str, log: Path = HELD_OUT_LOG) -> dict[str, Any]:
    """``metrics.held_out_regions`` of ``candidate`` from its logged leave-one-region-out folds.

    One entry per region (forest-class ``kappa``, ``f1``, ``iou``), ``mean`` and
    ``worst``, and the random forest's scores of the same folds.

    Raises
    ------
    ValueError
        ``log`` holds no fold of ``candidate``.
    """
    folds = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    folds = [fold for fold in folds if fold["candidate"] == candidate]
    if not folds:
        raise ValueError(f"{log}: no leave-one-region-out fold of candidate {candidate!r}")
    return {
        "held_out_regions": {
            "definition": "leave-one-region-out (benchmarks/held_out_regions.py, candidate "
            f"{candidate!r}): each region left out of a training run of this configuration "
            "(Zion always trained, its test block never read) and scored on all its labelled "
            "pixels; forest class against the rest",
            **summarise_regions({fold["region"]: fold["model"] for fold in folds}),
            "random_forest_baseline": summarise_regions(
                {fold["region"]: fold["random_forest"] for fold in folds}
            ),
        }
    }


def train_and_score(name: str, output_root: Path, progress: bool) -> dict[str, Any]:
    """Train one default model, score it and the random forest on the test block."""
    config = load_train_config(CONFIG_DIR / f"{name}.yaml")
    command = "make train-default  (python -m workflows.train_defaults)"
    trained = train_from_config(
        config, data_dir(), output_root / name, command=command, progress=progress, log=print
    )
    test_block = score_test_block(trained, config)
    if name in HELD_OUT_CANDIDATES:
        test_block.update(held_out_record(HELD_OUT_CANDIDATES[name]))
    card = add_metrics(trained.directory, test_block)
    forest_name = "forest"
    return {
        "name": name,
        "training_seconds": card.training.duration_s,
        "epochs": card.training.epochs,
        "best_epoch": trained.result.best_epoch,
        "model": _summary(test_block["test_block"]["model"], forest_name),
        "random_forest": _summary(test_block["test_block"]["random_forest_baseline"], forest_name),
    }


def main(argv: list[str] | None = None) -> None:
    """Train the default models (all, or those named) and print their test-block scores."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(DEFAULT_MODELS))
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR, help="model directories root")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--domain-only",
        action="store_true",
        help="only record the training domain in the existing cards (no training)",
    )
    args = parser.parse_args(argv)
    if args.domain_only:
        for name in args.models:
            config = load_train_config(CONFIG_DIR / f"{name}.yaml")
            card = record_training_domain(config, data_dir(), args.out / name)
            print(f"{name}: training domain recorded ({card.training_domain})")
        return
    started = time.perf_counter()
    results = [train_and_score(name, args.out, not args.no_progress) for name in args.models]
    for result in results:
        model, baseline = result["model"], result["random_forest"]
        print(f"\n{result['name']}: test block (Zion rows >= {TEST_FIRST_ROW})")
        print(f"  {'':22s} {'model':>8s} {'RF-60':>8s}")
        for key in ("mean_iou", "overall_accuracy", "forest_f1"):
            print(f"  {key:22s} {model[key]!s:>8s} {baseline[key]!s:>8s}")
        for class_name, value in model["per_class_iou"].items():
            other = baseline["per_class_iou"][class_name]
            print(f"  IoU {class_name:18s} {value!s:>8s} {other!s:>8s}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
