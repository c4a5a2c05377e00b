"""Mask AP50, precision, recall and count error computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from geoseg.change.instance_metrics import average_precision, instance_scores


def test_instance_scores_by_hand() -> None:
    reference = np.zeros((20, 30), dtype=np.int64)
    reference[2:6, 2:6] = 1
    reference[10:14, 2:6] = 2  # missed
    reference[2:6, 20:26] = 3
    predicted = np.zeros_like(reference)
    predicted[2:6, 2:6] = 5  # exact: IoU 1
    predicted[15:18, 10:20] = 6  # on background: a false positive
    predicted[2:6, 21:26] = 7  # 20 of 24 px: IoU 20 / 24
    scores = instance_scores(predicted, reference, {5: 0.9, 6: 0.8, 7: 0.7})
    assert (scores.predicted, scores.reference, scores.matched) == (3, 3, 2)
    assert scores.precision == pytest.approx(2 / 3)
    assert scores.recall == pytest.approx(2 / 3)
    assert scores.count_error == 0.0
    assert scores.mean_matched_iou == pytest.approx((1 + 20 / 24) / 2)
    # hits T F T of 3 references: precision 1 up to recall 1/3 (34 of COCO's 101 recall
    # points), then 2/3 up to recall 2/3 (33 points), then nothing
    assert scores.ap50 == pytest.approx((34 + 33 * 2 / 3) / 101)


def test_a_higher_scored_false_positive_does_not_steal_a_match() -> None:
    reference = np.zeros((10, 10), dtype=np.int64)
    reference[0:4, 0:4] = 1
    predicted = np.zeros_like(reference)
    predicted[0:4, 0:2] = 1  # half of the object: IoU 0.5 exactly is a match
    predicted[0:4, 2:4] = 2  # the other half, lower score: no object left for it
    scores = instance_scores(predicted, reference, {1: 0.9, 2: 0.6})
    assert scores.matched == 1 and scores.precision == 0.5
    assert average_precision(np.array([], dtype=bool), 4) == 0.0
    assert np.isnan(average_precision(np.array([True]), 0))
