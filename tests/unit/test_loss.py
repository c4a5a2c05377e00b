"""Confident loss and gain: probability thresholds, per-region evidence, chunk invariance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoseg.change.classmap import ClassSpec
from geoseg.change.loss import (
    LossRule,
    RegionEvidence,
    change_candidates,
    count_evidence,
    forest_probability,
)
from geoseg.errors import ConfigError
from geoseg.labels import LABEL_NODATA

CLASSES = (
    ClassSpec(id=0, name="non-forest"),
    ClassSpec(id=1, name="forest", is_forest=True),
)


def test_probability_threshold_at_both_dates() -> None:
    before = np.ones((1, 4), np.uint8)  # forest everywhere at BEFORE
    after = np.zeros((1, 4), np.uint8)  # non-forest everywhere at AFTER
    before_p = np.array([[255, 180, 178, 255]], np.int16)  # forest probability at BEFORE
    after_p = np.array([[0, 60, 0, 77]], np.int16)  # forest probability at AFTER
    rule = LossRule(min_probability=0.7)  # 0.7 * 255 = 178.5 -> 179 units
    assert rule.probability_units == 179
    got = change_candidates(before, after, CLASSES, before_p, after_p, rule)
    # sure/sure: loss; 180 & 195: loss; 178 at BEFORE: not sure; AFTER non-forest 178: not sure
    assert got.tolist() == [[1, 1, 0, 0]]
    # a threshold of 0 counts every transition, as a map difference does
    assert change_candidates(before, after, CLASSES, before_p, after_p, LossRule(0.0)).all()


def test_gain_needs_confidence_too() -> None:
    before, after = np.zeros((1, 2), np.uint8), np.ones((1, 2), np.uint8)
    before_p = np.array([[10, 120]], np.int16)
    after_p = np.array([[250, 250]], np.int16)
    got = change_candidates(before, after, CLASSES, before_p, after_p, LossRule(0.9))
    assert got.tolist() == [[2, 0]]


def test_forest_probability_sums_the_forest_bands() -> None:
    bands = np.array([[[100, 0]], [[90, 255]], [[80, 10]]], np.uint8)  # 3 classes
    assert forest_probability(bands, [1, 2], (1, 2)).tolist() == [[170, 255]]  # type: ignore[union-attr]
    assert forest_probability(None, [1], (1, 2)) is None


@pytest.mark.parametrize(("probability", "mmu"), [(1.5, 0.5), (-0.1, 0.5), (0.5, -1.0)])
def test_rule_is_validated(probability: float, mmu: float) -> None:
    with pytest.raises(ConfigError, match="--min-"):
        LossRule(probability, mmu)


def _evidence(
    before: np.ndarray,
    after: np.ndarray,
    before_p: np.ndarray,
    after_p: np.ndarray,
    areas: np.ndarray,
    chunk: tuple[int, int],
) -> RegionEvidence:
    masks = [np.ones(before.shape, bool), np.indices(before.shape)[1] < 7]
    total = RegionEvidence.zeros(2)
    rule = LossRule(0.6)
    for row in range(0, before.shape[0], chunk[0]):
        for col in range(0, before.shape[1], chunk[1]):
            s = np.s_[row : row + chunk[0], col : col + chunk[1]]
            kept = change_candidates(before[s], after[s], CLASSES, before_p[s], after_p[s], rule)
            total = total + count_evidence(
                before[s],
                after[s],
                CLASSES,
                areas[s],
                [(index, mask[s]) for index, mask in enumerate(masks)],
                2,
                kept_change=kept,
                before_forest_p=before_p[s],
                after_forest_p=after_p[s],
            )
    return total


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 13), cols=st.integers(1, 17), seed=st.integers(0, 1000))
def test_evidence_is_identical_for_any_chunking(rows: int, cols: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (13, 17)
    codes = np.array([0, 1, LABEL_NODATA], np.uint8)
    before = rng.choice(codes, size=shape).astype(np.uint8)
    after = rng.choice(codes, size=shape).astype(np.uint8)
    before_p = rng.integers(0, 256, size=shape).astype(np.int16)
    after_p = rng.integers(0, 256, size=shape).astype(np.int16)
    areas = rng.integers(80_000_000, 90_000_000, size=shape).astype(np.int64)
    whole = _evidence(before, after, before_p, after_p, areas, shape)
    chunked = _evidence(before, after, before_p, after_p, areas, (rows, cols))
    for name in ("region_cm2", "unseen_cm2", "loss_cm2", "gain_cm2", "confidence"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(chunked, name))
    # independent: region 0 is everything
    assert whole.region_cm2[0] == areas.sum()
    assert whole.unseen_cm2[0, 0] == areas[before == LABEL_NODATA].sum()
    sure = (np.where(before == 1, before_p, 255 - before_p) >= 153) & (
        np.where(after == 1, after_p, 255 - after_p) >= 153
    )
    assert whole.loss_cm2[0] == areas[sure & (before == 1) & (after == 0)].sum()
    assert whole.gain_cm2[0] == areas[sure & (before == 0) & (after == 1)].sum()
