"""Panoptic maps and PQ / SQ / RQ computed by hand on a small example."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.crs import CRS

from geoseg.change.panoptic import PanopticCounts, count_window, panoptic_quality
from geoseg.cli import cli
from geoseg.errors import InputError
from geoseg.grid import RasterGrid
from geoseg.io.instances import write_id_cog
from geoseg.labels import LABEL_NODATA
from geoseg.predict.panoptic import combine_panoptic, merged_class_names

GROUND, BUILDING = 0, 1


def reference() -> tuple[np.ndarray, np.ndarray]:
    ids = np.zeros((4, 6), dtype=np.uint32)
    ids[0:2, 0:2] = 1  # A, 4 px
    ids[2:4, 4:6] = 2  # B, 4 px
    return ids, np.where(ids > 0, BUILDING, GROUND).astype(np.uint32)


def prediction() -> tuple[np.ndarray, np.ndarray]:
    ids = np.zeros((4, 6), dtype=np.uint32)
    ids[0:2, 0:3] = 7  # P1: A plus 2 px of ground, 6 px
    ids[0, 4:6] = 9  # P2: 2 px of ground, a false positive; B is missed
    return ids, np.where(ids > 0, BUILDING, GROUND).astype(np.uint32)


def test_pq_sq_rq_by_hand() -> None:
    quality = panoptic_quality(count_window(*prediction(), *reference()))
    # building: P1-A IoU 4 / (6 + 4 - 4); TP 1, FP 1 (P2), FN 1 (B)
    building = quality.per_class[BUILDING]
    assert (building["tp"], building["fp"], building["fn"]) == (1, 1, 1)
    assert building["sq"] == pytest.approx(4 / 6)
    assert building["rq"] == pytest.approx(1 / 2)
    assert building["pq"] == pytest.approx((4 / 6) / 2)
    # ground: 16 px predicted, 16 in the reference, 12 shared -> IoU 12 / 20
    ground = quality.per_class[GROUND]
    assert (ground["pq"], ground["sq"], ground["rq"]) == pytest.approx((0.6, 0.6, 1.0))
    assert quality.pq == pytest.approx((1 / 3 + 0.6) / 2)
    assert quality.sq == pytest.approx((4 / 6 + 0.6) / 2)
    assert quality.rq == pytest.approx(0.75)


def test_void_reference_pixels_are_not_errors_and_windows_add_up() -> None:
    ref_ids, ref_classes = reference()
    ref_classes[3, 0:2] = LABEL_NODATA  # void in the reference
    ids, classes = prediction()
    ids[3, 0:2] = 11  # P3 lies entirely on void: not a false positive
    classes[3, 0:2] = BUILDING
    whole = panoptic_quality(count_window(ids, classes, ref_ids, ref_classes))
    assert whole.per_class[BUILDING]["fp"] == 1
    # ground: 14 predicted, 14 reference, 10 shared -> IoU 10 / 18
    assert whole.per_class[GROUND]["pq"] == pytest.approx(10 / 18)
    counts = PanopticCounts()
    for cols in (slice(0, 2), slice(2, 5), slice(5, 6)):
        counts += count_window(
            ids[:, cols], classes[:, cols], ref_ids[:, cols], ref_classes[:, cols]
        )
    assert panoptic_quality(counts) == whole


def test_combine_panoptic_things_over_stuff_and_void_kept() -> None:
    semantic = np.array([[0, 2, LABEL_NODATA], [2, 2, LABEL_NODATA]], dtype=np.uint8)
    ids = np.array([[0, 5, 0], [0, 0, 6]], dtype=np.uint32)
    things = np.array([[0, 1, 0], [0, 0, 1]], dtype=np.uint32)
    out_ids, out_classes = combine_panoptic(semantic, ids, things)
    assert out_ids.tolist() == [[0, 5, 0], [0, 0, 6]]
    assert out_classes.tolist() == [[0, 1, LABEL_NODATA], [2, 2, 1]]
    assert merged_class_names({0: "water", 2: "grass"}, {1: "building"}, "x") == {
        0: "water",
        1: "building",
        2: "grass",
    }
    with pytest.raises(InputError, match="class id 2"):
        merged_class_names({2: "grass"}, {2: "building"}, "x")


def test_panoptic_command_and_evaluate_panoptic_cli(tmp_path: Path) -> None:
    grid = RasterGrid(CRS.from_epsg(32616), Affine(0.5, 0, 733601.0, 0, -0.5, 3725139.0), 4, 6)
    semantic = tmp_path / "classes.tif"
    with rasterio.open(
        semantic,
        "w",
        driver="GTiff",
        height=4,
        width=6,
        count=1,
        dtype="uint8",
        crs=grid.crs,
        transform=grid.transform,
    ) as dataset:
        dataset.write(np.zeros((1, 4, 6), dtype=np.uint8))
        dataset.update_tags(GEOSEG_CLASS_NAMES=json.dumps({"0": "ground"}))
    predicted_ids, predicted_classes = prediction()
    instances = tmp_path / "instances.tif"
    write_id_cog(
        instances,
        grid,
        [(grid.full_window, predicted_ids, predicted_classes)],
        task="instance",
        class_names={1: "building"},
    )
    truth = tmp_path / "truth.tif"
    write_id_cog(
        truth,
        grid,
        [(grid.full_window, *reference())],
        task="panoptic",
        class_names={0: "ground", 1: "building"},
    )
    combined = tmp_path / "panoptic.tif"
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "panoptic",
            "--classes",
            str(semantic),
            "--instances",
            str(instances),
            "--out",
            str(combined),
        ],
    )
    assert result.exit_code == 0, result.output
    with rasterio.open(combined) as dataset:
        assert dataset.tags()["GEOSEG_TASK"] == "panoptic"
        assert json.loads(dataset.tags()["GEOSEG_CLASS_NAMES"]) == {"0": "ground", "1": "building"}
    result = runner.invoke(
        cli, ["evaluate", "--panoptic", "--json", "--pred", str(combined), "--truth", str(truth)]
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    assert scores["pq"] == round((1 / 3 + 0.6) / 2, 4)
    assert scores["per_class"]["building"]["fp"] == 1
