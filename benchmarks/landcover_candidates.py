"""Model selection for ``landcover-landsat``: candidate configurations scored on validation only.

Each candidate is ``workflows/configs/landcover-landsat.yaml`` with a few keys changed. It is
trained exactly as ``make train-default`` trains the shipped model (same seed, threads, chips,
epochs) into a temporary folder, and only its **validation** scores are reported (the window
rows 800-999 x cols 564-1127 of the config): the Zion test block (rows >= 1000) is never read
here.

Selection rule, fixed before any candidate was trained: every candidate keeps the epoch with
the best ``mean_iou_labelled`` (mean IoU over the classes that have validation labels:
developed, barren, forest, shrubland, herbaceous, cultivated; water and wetlands have none
there, so a stray prediction of them cannot be measured and would otherwise count as a whole
class of IoU 0); the configuration shipped is the candidate with the highest such score at its
kept epoch. Its test-block scores are then measured once, by ``workflows.train_defaults``, in
the same run as the random forest.

Usage: ``python benchmarks/landcover_candidates.py NAME [NAME ...] [--log FILE]`` (about 8
minutes per candidate on 2 cores); ``--list`` prints the candidates.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from geoseg.catalog.datadir import data_dir
from geoseg.training.config import TrainConfig
from geoseg.training.pipeline import class_index_names, train_from_config
from workflows.train_defaults import CONFIG_DIR

SELECTION = {"validation_score": "mean_iou_labelled"}
JITTER = {"radiometric_jitter": {"gain_std": 0.1, "offset_std": 0.05}}
BALANCED = {"chip_sampling": "class_balanced", "class_balance_power": 0.0}
SHALLOW = {
    "architecture_options": {"encoder_depth": 3, "decoder_channels": [64, 32, 16]},
}
CANDIDATES: dict[str, dict[str, Any]] = {
    # the configuration shipped before this selection, with the selection score above
    "base": SELECTION,
    "balanced": {**SELECTION, **BALANCED},
    "jitter": {**SELECTION, **JITTER},
    "shallow": {**SELECTION, **SHALLOW},
}


def candidate_config(name: str) -> TrainConfig:
    """The landcover config with candidate ``name``'s keys replaced."""
    path = CONFIG_DIR / "landcover-landsat.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw.update(CANDIDATES[name])
    raw["name"] = f"landcover-candidate-{name}"
    return TrainConfig.model_validate(raw)


def train_candidate(name: str) -> dict[str, Any]:
    """Train candidate ``name`` into a temporary folder; its validation scores and times."""
    config = candidate_config(name)
    wall, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="geoseg-candidate-") as folder:
        trained = train_from_config(
            config, data_dir(), Path(folder) / "model", progress=False, log=print
        )
    best = trained.result.history[trained.result.best_epoch - 1]
    names = class_index_names(config)
    return {
        "candidate": name,
        "changes": CANDIDATES[name],
        "best_epoch": best.epoch,
        "validation_mean_iou_labelled": round(best.validation_score, 4),
        "validation_mean_iou": round(best.validation_mean_iou, 4),
        "validation_iou": {
            class_name: round(value, 4)
            for class_name, value in zip(names, best.validation_iou, strict=True)
        },
        "history_mean_iou_labelled": [round(r.validation_score, 4) for r in trained.result.history],
        "wall_s": round(time.perf_counter() - wall),
        "cpu_s": round(time.process_time() - cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--log", type=Path, help="append one JSON line per candidate")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list or not args.names:
        print(json.dumps(CANDIDATES, indent=2))
        return
    for name in args.names:
        result = train_candidate(name)
        print(json.dumps(result))
        if args.log is not None:
            with args.log.open("a", encoding="utf-8") as stream:
                stream.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
