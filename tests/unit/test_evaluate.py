from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner

from geoseg.change.classmap import ClassMap
from geoseg.change.evaluate import evaluate_rasters
from geoseg.cli import cli
from geoseg.errors import GridMismatchError

PREDICTION = np.array(
    [
        [1, 1, 2, 2],
        [1, 2, 2, 255],
        [3, 3, 1, 2],
    ],
    dtype=np.uint8,
)
TRUTH = np.array(
    [
        [1, 2, 2, 2],
        [1, 2, 0, 2],
        [3, 1, 1, 2],
    ],
    dtype=np.uint8,
)
# truth 0 is nodata, prediction 255 is nodata: those two pixels are excluded.
# pairs (truth, pred): (1,1) (2,1) (2,2) (2,2) (1,1) (2,2) (3,3) (1,3) (1,1) (2,2)
EXPECTED = [[3, 0, 1], [1, 4, 0], [0, 0, 1]]


def _pair(make_geotiff: Callable[..., Path]) -> tuple[Path, Path]:
    prediction = make_geotiff(PREDICTION, name="pred.tif", nodata=255)
    truth = make_geotiff(TRUTH, name="truth.tif", nodata=0)
    return prediction, truth


def test_confusion_matrix_by_hand(make_geotiff: Callable[..., Path]) -> None:
    prediction, truth = _pair(make_geotiff)
    result = evaluate_rasters(prediction, truth, window_size=2)
    assert result.class_ids == (1, 2, 3)
    assert result.scores.matrix.tolist() == EXPECTED
    summary = result.to_dict()
    assert summary["overall_accuracy"] == pytest.approx(8 / 10, abs=1e-4)
    # class 1: tp 3, fp 1, fn 1 -> IoU 3/5
    assert summary["per_class"]["class 1"]["iou"] == pytest.approx(0.6)  # type: ignore[index]


def test_class_map_applies_to_truth(make_geotiff: Callable[..., Path]) -> None:
    prediction, truth = _pair(make_geotiff)
    # merge truth 2 and 3 into class 2; class 3 no longer exists in the truth
    class_map = ClassMap.model_validate(
        {
            "classes": [
                {"id": 1, "name": "one", "codes": [1]},
                {"id": 2, "name": "two", "codes": [2, 3]},
            ]
        }
    )
    result = evaluate_rasters(prediction, truth, class_map=class_map)
    # truth 3 at (2,0) predicted 3 now counts as truth 2 predicted 3
    assert result.class_ids == (1, 2, 3)
    assert result.scores.matrix.tolist() == [[3, 0, 1], [1, 4, 1], [0, 0, 0]]
    assert result.scores.class_names == ("one", "two", "class 3")


def test_truth_on_a_finer_grid_is_aligned_by_nearest(make_geotiff: Callable[..., Path]) -> None:
    prediction = make_geotiff(PREDICTION, name="pred.tif", nodata=255)
    fine = np.repeat(np.repeat(TRUTH, 2, axis=0), 2, axis=1)
    origin = (300000.0, 4150000.0)
    truth = make_geotiff(
        fine,
        name="fine.tif",
        nodata=0,
        transform=Affine(15.0, 0.0, origin[0] + 7.5, 0.0, -15.0, origin[1] - 7.5),
    )
    # shifted by half a fine pixel: each 30 m centre falls inside the right 15 m block
    result = evaluate_rasters(prediction, truth)
    assert result.scores.matrix.tolist() == EXPECTED


def test_disjoint_rasters_are_rejected(make_geotiff: Callable[..., Path]) -> None:
    prediction = make_geotiff(PREDICTION, name="pred.tif", nodata=255)
    far = make_geotiff(
        TRUTH, name="far.tif", nodata=0, transform=Affine(30.0, 0, 900000.0, 0, -30.0, 1000.0)
    )
    with pytest.raises(GridMismatchError, match="do not overlap"):
        evaluate_rasters(prediction, far)


def test_cli_json(make_geotiff: Callable[..., Path]) -> None:
    prediction, truth = _pair(make_geotiff)
    outcome = CliRunner().invoke(
        cli, ["evaluate", "--pred", str(prediction), "--truth", str(truth), "--json"]
    )
    assert outcome.exit_code == 0, outcome.output
    summary = json.loads(outcome.output)
    assert summary["confusion_matrix"] == EXPECTED
    assert summary["class_ids"] == [1, 2, 3]
    text = CliRunner().invoke(cli, ["evaluate", "--pred", str(prediction), "--truth", str(truth)])
    assert "mean IoU" in text.output
