"""The shipped default models load, describe themselves, and reproduce their test-block scores."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from geoseg.change.metrics import mean_iou, per_class_dice
from geoseg.cli import cli
from geoseg.grid import PixelWindow
from geoseg.models.loading import load_model, shipped_models
from geoseg.training.config import load_train_config
from geoseg.training.holdout import cpu_bf16_agreement, network_block_matrix
from geoseg.training.pipeline import prepare_scenes
from workflows.train_defaults import CONFIG_DIR, DEFAULT_MODELS, TEST_FIRST_ROW

WEIGHTS_LIMIT_BYTES = 25 * 1024 * 1024


def test_defaults_are_shipped_small_and_documented() -> None:
    assert set(DEFAULT_MODELS) <= set(shipped_models())
    total = 0
    for name in DEFAULT_MODELS:
        loaded = load_model(name)
        total += (loaded.directory / loaded.card.weights_file).stat().st_size
        assert loaded.card.band_names == ["blue", "green", "red", "nir"]
        assert loaded.card.scaling.method == "scene_percentile"
        assert "test_block" in loaded.card.metrics
        assert loaded.card.attribution
    assert total <= WEIGHTS_LIMIT_BYTES


def test_models_command_lists_and_shows() -> None:
    runner = CliRunner()
    listing = runner.invoke(cli, ["models", "list"])
    assert listing.exit_code == 0, listing.output
    for name in DEFAULT_MODELS:
        assert name in listing.output
    shown = runner.invoke(cli, ["models", "show", "landcover-landsat"])
    assert shown.exit_code == 0, shown.output
    assert "test block" in shown.output and "RF" in shown.output
    assert "bf16 labels agree with fp32 on 99." in shown.output
    # the earlier Landsat-only forest model's name is an alias of forest
    forest = runner.invoke(cli, ["models", "show", "forest-landsat"])
    assert forest.exit_code == 0, forest.output
    assert "held-out regions" in forest.output
    assert "(Wales; RF Para)" in forest.output
    missing = runner.invoke(cli, ["models", "show", "no-such-model"])
    assert missing.exit_code != 0


@pytest.mark.slow
@pytest.mark.parametrize("name", DEFAULT_MODELS)
def test_test_block_scores_are_reproduced(name: str, shared_data: Path) -> None:
    config = load_train_config(CONFIG_DIR / f"{name}.yaml")
    zion = prepare_scenes(config, shared_data)[0]
    loaded = load_model(name)
    block = PixelWindow(TEST_FIRST_ROW, 0, zion.grid.height - TEST_FIRST_ROW, zion.grid.width)
    matrix = network_block_matrix(loaded.module, zion, block, loaded.card.num_classes)
    recorded = loaded.card.metrics["test_block"]["model"]
    assert mean_iou(matrix) == pytest.approx(recorded["mean_iou"], abs=0.01)
    forest = [spec.name for spec in loaded.card.classes].index("forest")
    assert per_class_dice(matrix)[forest] == pytest.approx(
        recorded["per_class"]["forest"]["f1"], abs=0.01
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", DEFAULT_MODELS)
def test_recorded_bf16_agreement_is_reproduced(name: str, shared_data: Path) -> None:
    config = load_train_config(CONFIG_DIR / f"{name}.yaml")
    scenes = prepare_scenes(config, shared_data)
    loaded = load_model(name)
    agreement, pixels = cpu_bf16_agreement(loaded, scenes)
    assert pixels == 112800  # the validation windows' valid pixels
    recorded = loaded.card.cpu_bf16_agreement
    assert recorded is not None and recorded >= 0.995  # ``--precision auto`` may use bf16
    # other CPUs order bf16 sums differently: a few pixels either way
    assert agreement == pytest.approx(recorded, abs=0.002)
