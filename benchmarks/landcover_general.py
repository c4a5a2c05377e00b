"""Issue 22 item 4: the 8 NLCD classes against five general classes trained on every site.

Keep the 8 NLCD classes, or move to the five general classes? Decided by held-out regions.

Both are scored by held-out region on the five general classes of ``sites/class_map.csv``
(forest, other vegetation, bare, built, water):

- ``nlcd8``: the shipped ``landcover-landsat`` (8 NLCD classes, trained on Zion only, so every
  site is held out for it), its class probabilities summed into the general classes (water ->
  water, developed -> built, barren -> bare, forest -> forest, shrubland, herbaceous, cultivated
  and wetlands -> other vegetation);
- ``general5``: the shipped ``forest`` configuration (``workflows/configs/forest.yaml``,
  pixelnet, 30 m reads) with the five general classes (Zion's NLCD mapped as above, the sites
  through the ``general_class`` column), trained once per region with that region left out
  (Zion always trained, its test block never read), as ``held_out_regions.py`` does.

The decision rule is fixed here, before either runs (:data:`DECISION_RULE`).

Usage: ``python benchmarks/landcover_general.py [--log FILE]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from numpy.typing import NDArray
from torch import nn

from geoseg.catalog.datadir import data_dir
from geoseg.change.metrics import cohen_kappa, per_class_iou
from geoseg.models.loading import load_model
from geoseg.training.config import TrainConfig
from geoseg.training.holdout import network_block_matrix
from geoseg.training.loop import train_model
from geoseg.training.pipeline import build_untrained, prepare_scenes
from geoseg.training.sampling import TrainingScene
from workflows.train_defaults import CONFIG_DIR

DECISION_RULE = (
    "Fixed 2026-12-06 before either candidate ran: per region left out (Zion excluded: nlcd8 "
    "was trained on it), the mean IoU over the general classes that have labels in that region "
    "(a class predicted but never labelled there is not counted) and the multi-class Cohen's "
    "kappa; the land-cover model moves to the five general classes if general5's mean over the "
    "regions of that labelled-class mean IoU is higher than nlcd8's, and keeps the 8 NLCD "
    "classes otherwise. Measured only: the land-cover model is not retrained or shipped here."
)

GENERAL = ["forest", "other_vegetation", "bare", "built", "water"]
NLCD_TO_GENERAL = {1: 4, 2: 3, 3: 2, 4: 0, 5: 1, 6: 1, 7: 1, 8: 1}
"""Generalised NLCD code (1 water ... 8 wetlands) -> general class id (index of GENERAL)."""
COLOURS = ["#1c5f2c", "#a3cc51", "#b3ac9f", "#d99282", "#466b9f"]
ALWAYS_TRAINED = "Zion"


def general_config() -> TrainConfig:
    """``forest.yaml`` with the five general classes instead of forest / non-forest."""
    raw = yaml.safe_load((CONFIG_DIR / "forest.yaml").read_text(encoding="utf-8"))
    raw["name"] = "landcover-general"
    raw["classes"] = [
        {"id": index, "name": name, "color": colour}
        for index, (name, colour) in enumerate(zip(GENERAL, COLOURS, strict=True))
    ]
    values = {name: index for index, name in enumerate(GENERAL)}
    for scene in raw["scenes"]:
        if scene["region"] == ALWAYS_TRAINED:
            scene["dense_labels"]["codes"] = NLCD_TO_GENERAL
        else:
            scene["class_map"] = {**scene["class_map"], "column": "general_class", "values": values}
    return TrainConfig.model_validate(raw)


class MergedClasses(nn.Module):
    """Log of the summed class probabilities of ``module`` per merged class."""

    def __init__(self, module: nn.Module, targets: list[int], classes: int) -> None:
        super().__init__()
        self.module = module
        self.register_buffer("targets", torch.tensor(targets))
        self.classes = classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Merged log-probabilities ``(N, classes, H, W)``."""
        probabilities = torch.softmax(self.module(images), dim=1)
        shape = (probabilities.shape[0], self.classes, *probabilities.shape[2:])
        merged = torch.zeros(shape, dtype=probabilities.dtype, device=probabilities.device)
        merged.index_add_(1, self.targets, probabilities)
        return torch.log(merged + 1e-8)


def region_scores(matrix: NDArray[np.int64]) -> dict[str, Any]:
    """Labelled-class mean IoU, kappa and per-class IoU (rows: truth) of one region."""
    labelled = matrix.sum(axis=1) > 0
    iou = per_class_iou(matrix)
    return {
        "mean_iou_labelled": round(float(np.nanmean(iou[labelled])), 4),
        "kappa": round(cohen_kappa(matrix), 4),
        "iou": {GENERAL[i]: round(float(iou[i]), 4) for i in np.flatnonzero(labelled)},
        "pixels": {GENERAL[i]: int(matrix[i].sum()) for i in np.flatnonzero(labelled)},
    }


def scenes_matrix(module: nn.Module, scenes: list[TrainingScene]) -> NDArray[np.int64]:
    """Confusion matrix of ``module`` over every labelled pixel of ``scenes``."""
    total = np.zeros((len(GENERAL), len(GENERAL)), dtype=np.int64)
    for scene in scenes:
        total += network_block_matrix(module, scene, scene.grid.full_window, len(GENERAL))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, help="append one JSON line per region and candidate")
    args = parser.parse_args()
    print(DECISION_RULE, flush=True)
    config = general_config()
    torch.set_num_threads(1)
    scenes = prepare_scenes(config, data_dir())
    regions = list(dict.fromkeys(s.region for s in config.scenes if s.region != ALWAYS_TRAINED))
    loaded = load_model("landcover-landsat")
    targets = [NLCD_TO_GENERAL[class_id] for class_id in loaded.card.class_ids]
    nlcd8 = MergedClasses(loaded.module, targets, len(GENERAL)).eval()
    results: dict[str, dict[str, Any]] = {"nlcd8": {}, "general5": {}}
    for region in regions:
        held_out = [scene for scene in scenes if scene.region == region]
        training = [scene for scene in scenes if scene.region != region]
        started = time.perf_counter()
        fold = config.model_copy(
            update={"scenes": [s for s in config.scenes if s.region != region]}
        )
        module = build_untrained(fold)
        result = train_model(module, training, fold, progress=False)
        seconds = round(time.perf_counter() - started)
        for name, model in (("nlcd8", nlcd8), ("general5", module)):
            scored = region_scores(scenes_matrix(model, held_out))
            results[name][region] = scored
            record = {"candidate": name, "region": region, **scored}
            if name == "general5":
                record.update(best_epoch=result.best_epoch, network_seconds=seconds)
            print(json.dumps(record), flush=True)
            if args.log is not None:
                with args.log.open("a", encoding="utf-8") as stream:
                    stream.write(json.dumps(record) + "\n")
    means = {
        name: round(float(np.mean([s["mean_iou_labelled"] for s in per.values()])), 4)
        for name, per in results.items()
    }
    kappas = {
        name: round(float(np.mean([s["kappa"] for s in per.values()])), 4)
        for name, per in results.items()
    }
    print(f"\nmean labelled-class IoU {means}, mean kappa {kappas}")
    print("decision:", "five general classes" if means["general5"] > means["nlcd8"] else "8 NLCD")


if __name__ == "__main__":
    main()
