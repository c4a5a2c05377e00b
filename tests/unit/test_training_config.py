from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from geoseg.errors import ConfigError
from geoseg.training.config import TrainConfig, load_train_config

CONFIGS = Path(__file__).resolve().parents[2] / "workflows" / "configs"


def minimal() -> dict[str, Any]:
    return {
        "name": "tiny",
        "architecture": "segnet",
        "architecture_options": {"widths": [4, 8]},
        "bands": [{"name": "blue"}, {"name": "nir"}],
        "scaling": {"units": "dn", "method": "scene_percentile"},
        "classes": [
            {"id": 0, "name": "other", "color": "#000000"},
            {"id": 1, "name": "forest", "color": "#00ff00"},
        ],
        "scenes": [
            {
                "image": "image.tif",
                "band_indexes": [1, 2],
                "dense_labels": {"path": "labels.tif"},
                "train_windows": [{"row": 0, "col": 0, "height": 32, "width": 64}],
                "validation_windows": [{"row": 32, "col": 0, "height": 32, "width": 64}],
            }
        ],
        "chip_size": 16,
    }


def write(tmp_path: Path, content: dict[str, Any]) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def test_shipped_configs_validate() -> None:
    for name in ("landcover-landsat", "forest-landsat", "forest"):
        config = load_train_config(CONFIGS / f"{name}.yaml")
        assert config.name == name


def test_minimal_config_and_defaults(tmp_path: Path) -> None:
    config = load_train_config(write(tmp_path, minimal()))
    assert config.loss == ["cross_entropy", "dice"]
    assert config.seed == 0


def test_unknown_key_is_rejected_with_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, {**minimal(), "learning_rat": 0.1})
    with pytest.raises(ConfigError, match=r"(?s)train\.yaml.*learning_rat"):
        load_train_config(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"loss": ["focal"]}, "loss"),
        ({"chip_size": 64}, "smaller than chip_size"),
        ({"classes": [{"id": 0, "name": "only", "color": "#000000"}]}, "classes"),
        ({"class_weights": [1.0]}, "class_weights"),
        ({"class_weights": [1.0, 0.0]}, "class_weights"),
        ({"chip_sampling": "stratified"}, "chip_sampling"),
        ({"class_balance_power": 1.5}, "class_balance_power"),
        ({"radiometric_jitter": {"gain_std": 0.1, "scale": 1}}, "scale"),
        ({"validation_score": "accuracy"}, "validation_score"),
    ],
)
def test_invalid_values(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_train_config(write(tmp_path, {**minimal(), **change}))


def test_scene_rules() -> None:
    scene = minimal()["scenes"][0]
    both = {**scene, "sparse_labels": {"path": "p.shp", "field": "c", "codes": {"a": 1}}}
    with pytest.raises(ValueError, match="exactly one"):
        TrainConfig.model_validate({**minimal(), "scenes": [both]})
    overlapping = {
        **scene,
        "validation_windows": [{"row": 16, "col": 0, "height": 32, "width": 64}],
    }
    with pytest.raises(ValueError, match="overlaps validation"):
        TrainConfig.model_validate({**minimal(), "scenes": [overlapping]})
    no_validation = {**scene, "validation_windows": []}
    with pytest.raises(ValueError, match="validation_windows"):
        TrainConfig.model_validate({**minimal(), "scenes": [no_validation]})
    unknown_class = {**scene, "dense_labels": {"path": "l.tif", "codes": {4: 9}}}
    with pytest.raises(ValueError, match="unknown class ids"):
        TrainConfig.model_validate({**minimal(), "scenes": [unknown_class]})
