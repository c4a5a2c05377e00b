from __future__ import annotations

import math

import numpy as np
import pytest

from geoseg.change.metrics import (
    confusion_matrix,
    f1_score,
    mean_iou,
    overall_accuracy,
    per_class_dice,
    per_class_iou,
    scores,
)
from geoseg.errors import InputError

TRUTH = np.array([[0, 0, 1, 1], [2, 2, 1, -1]])
PREDICTION = np.array([[0, 1, 1, 1], [2, 0, 255, 2]])
# hand count (pixels with truth -1 or prediction 255 are skipped):
# (0,0) (0,1) (1,1) (1,1) (2,2) (2,0)
EXPECTED = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 1]])


def test_confusion_matrix_by_hand() -> None:
    np.testing.assert_array_equal(confusion_matrix(TRUTH, PREDICTION, 3), EXPECTED)


def test_confusion_matrix_is_additive_over_windows() -> None:
    left = confusion_matrix(TRUTH[:, :2], PREDICTION[:, :2], 3)
    right = confusion_matrix(TRUTH[:, 2:], PREDICTION[:, 2:], 3)
    np.testing.assert_array_equal(left + right, EXPECTED)


def test_scores_by_hand() -> None:
    # class 0: tp 1, fp 1 (truth 2), fn 1 -> IoU 1/3, Dice 2/4
    # class 1: tp 2, fp 1, fn 0 -> IoU 2/3, Dice 4/5
    # class 2: tp 1, fp 0, fn 1 -> IoU 1/2, Dice 2/3
    np.testing.assert_allclose(per_class_iou(EXPECTED), [1 / 3, 2 / 3, 1 / 2])
    np.testing.assert_allclose(per_class_dice(EXPECTED), [1 / 2, 4 / 5, 2 / 3])
    assert mean_iou(EXPECTED) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert overall_accuracy(EXPECTED) == pytest.approx(4 / 6)
    assert f1_score(EXPECTED, 1) == pytest.approx(0.8)


def test_absent_class_is_nan_and_left_out_of_the_mean() -> None:
    matrix = np.array([[5, 0, 0], [0, 0, 0], [1, 0, 4]])
    iou = per_class_iou(matrix)
    assert math.isnan(iou[1])
    assert mean_iou(matrix) == pytest.approx((5 / 6 + 4 / 5) / 2)


def test_scores_dict_is_json_ready() -> None:
    summary = scores(EXPECTED, ["a", "b", "c"]).to_dict()
    assert summary["per_class"]["b"]["f1"] == 0.8  # type: ignore[index]
    assert summary["confusion_matrix"] == EXPECTED.tolist()
    with pytest.raises(InputError, match="class names"):
        scores(EXPECTED, ["a", "b"])


def test_shape_mismatch_is_rejected() -> None:
    with pytest.raises(InputError, match="shape"):
        confusion_matrix(TRUTH, PREDICTION[:, :3], 3)
