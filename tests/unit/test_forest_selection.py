"""The shipped forest config is the candidate selected by held_out_regions; its card record."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from geoseg.models.card import parse_held_out_regions
from geoseg.training.config import load_train_config
from workflows.train_defaults import CONFIG_DIR, HELD_OUT_CANDIDATES, held_out_record

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "held_out_regions.py"


def _benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("held_out_regions", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("name", "candidate"), sorted(HELD_OUT_CANDIDATES.items()))
def test_shipped_config_is_the_selected_candidate(name: str, candidate: str) -> None:
    shipped = load_train_config(CONFIG_DIR / f"{name}.yaml").model_dump()
    selected = _benchmark().candidate_config(candidate).model_dump()
    for key in ("name", "description"):
        shipped.pop(key)
        selected.pop(key)
    assert shipped == selected


def test_held_out_record_from_logged_folds(tmp_path: Path) -> None:
    log = tmp_path / "folds.jsonl"
    folds = [
        ("A", {"kappa": 0.7, "f1": 0.8, "iou": 0.6}, {"kappa": 0.5, "f1": 0.7, "iou": 0.5}),
        ("B", {"kappa": 0.3, "f1": 0.6, "iou": 0.4}, {"kappa": 0.6, "f1": 0.8, "iou": 0.7}),
    ]
    lines = [
        {"candidate": "c", "region": region, "model": model, "random_forest": forest}
        for region, model, forest in folds
    ]
    lines.append({**lines[0], "candidate": "other", "model": {"kappa": 0.0, "f1": 0, "iou": 0}})
    log.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    record = held_out_record("c", log)["held_out_regions"]
    scores = parse_held_out_regions(record)
    assert scores["mean"].kappa == pytest.approx(0.5)
    assert scores["worst"].region == "B" and scores["worst"].kappa == 0.3
    baseline = parse_held_out_regions(record["random_forest_baseline"])
    assert baseline["worst"].region == "A"
    with pytest.raises(ValueError, match="no leave-one-region-out fold"):
        held_out_record("missing", log)
