"""Instance segmentation on the real Atlanta tile: training lowers the loss; predict and PQ."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import yaml
from click.testing import CliRunner

from geoseg.cli import cli
from geoseg.training.config import TrainConfig
from geoseg.training.instances import train_instances
from geoseg.training.pipeline import build_untrained, prepare_scenes
from tests.unit.test_stac_outputs import read_item

CONFIG = Path(__file__).resolve().parents[2] / "workflows" / "configs" / "buildings-atlanta.yaml"


@pytest.mark.slow
def test_short_training_on_atlanta_lowers_the_loss(shared_data: Path) -> None:
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data.update(
        architecture_options={"fpn_channels": 32, "anchor_sizes": [16, 32, 64, 128]},
        chip_size=128,
        batch_size=2,
        chips_per_epoch=8,
        epochs=3,
        learning_rate=0.002,
    )
    config = TrainConfig.model_validate(data)
    scenes = prepare_scenes(config, shared_data)
    result = train_instances(build_untrained(config), scenes, config)
    assert len(result.epoch_losses) == 3
    assert result.epoch_losses[-1] < 0.8 * result.epoch_losses[0]


@pytest.mark.slow
def test_predict_buildings_atlanta_writes_instances_and_scores_pq(
    shared_data: Path, tmp_path: Path
) -> None:
    image = shared_data / "buildings_atlanta" / "image.tif"
    raster, polygons = tmp_path / "instances.tif", tmp_path / "instances.gpkg"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "predict",
            str(image),
            "--model",
            "buildings-atlanta",
            "--out",
            str(raster),
            "--polygons",
            str(polygons),
            "--chunk-size",
            "300",
            "--min-score",  # the demonstration model scores below 0.5 (README)
            "0.05",
        ],
    )
    assert result.exit_code == 0, result.output
    with rasterio.open(raster) as dataset, rasterio.open(image) as source:
        assert dataset.tags()["GEOSEG_TASK"] == "instance"
        assert (dataset.crs, dataset.transform, dataset.shape) == (
            source.crs,
            source.transform,
            source.shape,
        )
        ids = dataset.read(1)
    frame = pyogrio.read_dataframe(polygons, layer="instances")
    assert frame["instance_id"].tolist() == sorted(np.unique(ids[ids > 0]).tolist())
    assert len(frame) > 0 and (frame["score"] >= 0.05).all()
    item = read_item(tmp_path / "instances.tif.stac.json")  # the outputs' STAC Item
    assert set(item.assets) == {"instances", "polygons"}
    assert item.assets["polygons"].media_type == "application/geopackage+sqlite3"
    assert "buildings-atlanta" in item.properties["processing:lineage"]
    result = runner.invoke(
        cli,
        [
            "evaluate",
            "--panoptic",
            "--json",
            "--pred",
            str(raster),
            "--truth",
            str(shared_data / "buildings_atlanta" / "instances.tif"),
        ],
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    assert 0.0 <= scores["pq"] <= 1.0
