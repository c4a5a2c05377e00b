"""Change counting: exact additive counts, chunk invariance, final tables."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from geoseg.change.classmap import ClassSpec
from geoseg.change.counts import (
    AREA_UNITS_PER_HA,
    ChangeCounts,
    area_units,
    class_index_lookup,
    count_window,
    finalize,
    merge_classes,
    set_forest_classes,
)
from geoseg.change.loss import LossRule, RegionEvidence, change_candidates, count_evidence
from geoseg.errors import ConfigError
from geoseg.labels import LABEL_NODATA

CLASSES = (
    ClassSpec(id=0, name="non-forest"),
    ClassSpec(id=1, name="forest", is_forest=True),
    ClassSpec(id=5, name="water"),
)


def _random_maps(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[NDArray[np.uint8], ...]:
    codes = np.array([0, 1, 5, LABEL_NODATA, 7], dtype=np.uint8)  # 7 is unknown: excluded
    before = rng.choice(codes, size=shape, p=[0.3, 0.4, 0.1, 0.1, 0.1]).astype(np.uint8)
    after = rng.choice(codes, size=shape, p=[0.4, 0.3, 0.1, 0.1, 0.1]).astype(np.uint8)
    return before, after


def _region_masks(shape: tuple[int, int]) -> list[NDArray[np.bool_]]:
    rows, cols = np.indices(shape)
    return [rows < shape[0] // 2, cols >= shape[1] // 3, np.ones(shape, bool)]  # overlapping


def _count_in_windows(
    before: NDArray[np.uint8],
    after: NDArray[np.uint8],
    areas: NDArray[np.int64],
    masks: list[NDArray[np.bool_]],
    chunk: tuple[int, int],
) -> ChangeCounts:
    lookup = class_index_lookup(CLASSES)
    total = ChangeCounts.zeros(len(masks), len(CLASSES))
    for row in range(0, before.shape[0], chunk[0]):
        for col in range(0, before.shape[1], chunk[1]):
            rows, cols = slice(row, row + chunk[0]), slice(col, col + chunk[1])
            window_masks = [(index, mask[rows, cols]) for index, mask in enumerate(masks)]
            part = count_window(
                before[rows, cols], after[rows, cols], areas[rows], window_masks, lookup, len(masks)
            )
            total = part + total
    return total


def test_counts_match_a_direct_count(rng: np.random.Generator) -> None:
    before, after = _random_maps(rng, (30, 40))
    areas = area_units(np.linspace(900.0, 950.0, 30))[:, None]
    masks = _region_masks(before.shape)
    counts = _count_in_windows(before, after, areas, masks, (30, 40))
    for region, mask in enumerate(masks):
        for i, source in enumerate(CLASSES):
            for j, target in enumerate(CLASSES):
                hit = mask & (before == source.id) & (after == target.id)
                assert counts.pixels[region, i, j] == hit.sum()
                assert counts.area_cm2[region, i, j] == (hit * areas).sum()
        valid = np.isin(before, [0, 1, 5]) & np.isin(after, [0, 1, 5])
        assert counts.excluded_pixels[region] == (mask & ~valid).sum()


@settings(max_examples=25, deadline=None)
@given(
    chunk_rows=st.integers(1, 23),
    chunk_cols=st.integers(1, 31),
    seed=st.integers(0, 2**16),
)
def test_counts_are_identical_for_any_chunking(chunk_rows: int, chunk_cols: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    before, after = _random_maps(rng, (23, 31))
    # geodesic-like row areas with many significant digits
    areas = area_units(rng.uniform(700.0, 800.0, 23))[:, None]
    masks = _region_masks(before.shape)
    whole = _count_in_windows(before, after, areas, masks, (23, 31))
    chunked = _count_in_windows(before, after, areas, masks, (chunk_rows, chunk_cols))
    assert np.array_equal(whole.pixels, chunked.pixels)
    assert np.array_equal(whole.area_cm2, chunked.area_cm2)
    assert np.array_equal(whole.excluded_pixels, chunked.excluded_pixels)
    first = finalize(whole, CLASSES, ["a", "b", "c"], RegionEvidence.zeros(3))
    second = finalize(chunked, CLASSES, ["a", "b", "c"], RegionEvidence.zeros(3))
    assert first.classes.equals(second.classes)
    assert first.transitions.equals(second.transitions)
    assert first.regions.equals(second.regions)


def test_area_sums_stay_exact_past_float_precision() -> None:
    # 3 pixels of 2**52 cm2 each: a float64 running sum would round
    before = np.ones((3, 1), dtype=np.uint8)
    areas = np.array([2**52 + 1, 2**52 + 3, 2**52 + 5], dtype=np.int64)[:, None]
    counts = count_window(
        before, before, areas, [(0, np.ones((3, 1), bool))], class_index_lookup(CLASSES), 1
    )
    assert counts.area_cm2[0, 1, 1] == 3 * 2**52 + 9


def test_final_tables_on_a_known_example() -> None:
    # forest -> forest 2 px, forest -> non-forest 1 px, non-forest -> forest 1 px, water stays 1 px
    before = np.array([[1, 1, 1, 0, 5, LABEL_NODATA]], dtype=np.uint8)
    after = np.array([[1, 1, 0, 1, 5, 1]], dtype=np.uint8)
    areas = area_units(np.array([900.0]))[:, None]
    mask = np.ones(before.shape, bool)
    counts = count_window(before, after, areas, [(0, mask)], class_index_lookup(CLASSES), 2)
    kept = change_candidates(before, after, CLASSES, None, None, LossRule())
    evidence = count_evidence(
        before,
        after,
        CLASSES,
        areas,
        [(0, mask)],
        2,
        kept_change=kept,
        before_forest_p=None,
        after_forest_p=None,
    )
    stats = finalize(counts, CLASSES, ["zone", "empty"], evidence)
    # class ids stay integers though the empty region has no transition rows
    for column in ("from_class_id", "to_class_id"):
        assert stats.transitions[column].dtype == np.int64
    assert stats.classes["class_id"].dtype == np.int64
    ids_csv = stats.transitions[["from_class_id", "to_class_id"]].to_csv(index=False)
    assert "." not in ids_csv and ids_csv.splitlines()[1:] == [
        f"{row.from_class_id},{row.to_class_id}" for row in stats.transitions.itertuples()
    ]
    forest = stats.classes.query("region_id == 'zone' and class_id == 1").iloc[0]
    assert forest.pixels_before == 3 and forest.pixels_after == 3 and forest.pixels_both == 2
    assert forest.iou == pytest.approx(2 / 4)
    assert forest.dice == pytest.approx(4 / 6)
    assert forest.area_before_ha == pytest.approx(0.27)
    assert forest.area_change_ha == 0.0
    region = stats.regions.set_index("region_id").loc["zone"]
    assert region.valid_pixels == 5 and region.excluded_pixels == 1
    assert region.deforestation_ha == pytest.approx(0.09)
    assert region.deforestation_share == pytest.approx(1 / 3)
    assert region.changed_ha == pytest.approx(0.18)
    assert region.loss_ha == pytest.approx(0.09) and region.gain_ha == pytest.approx(0.09)
    assert region.net_change_ha == 0.0
    assert region.region_area_ha == pytest.approx(0.54)
    assert region.masked_before_ha == pytest.approx(0.09)
    assert region.masked_before_share == pytest.approx(1 / 6)
    assert region.masked_after_ha == 0.0
    assert region.mean_confidence_before == 1.0  # class maps without probabilities are certain
    transitions = stats.transitions.query("region_id == 'zone'")
    assert set(
        zip(transitions.from_class, transitions.to_class, transitions.pixels, strict=True)
    ) == {
        ("forest", "forest", 2),
        ("forest", "non-forest", 1),
        ("non-forest", "forest", 1),
        ("water", "water", 1),
    }
    empty = stats.regions.set_index("region_id").loc["empty"]
    assert empty.valid_pixels == 0 and np.isnan(empty.deforestation_share)
    assert stats.classes.query("region_id == 'empty'").iou.isna().all()
    assert stats.transitions.query("region_id == 'empty'").empty


def test_change_candidates_of_certain_maps() -> None:
    before = np.array([[1, 1, 0, 1, LABEL_NODATA, 1]], dtype=np.uint8)
    after = np.array([[0, 1, 1, 5, 0, 9]], dtype=np.uint8)
    expected = [[1, 0, 2, 1, LABEL_NODATA, LABEL_NODATA]]  # loss, stays, gain, loss, unseen x2
    assert change_candidates(before, after, CLASSES, None, None, LossRule()).tolist() == expected


def test_merge_and_forest_classes() -> None:
    merged = merge_classes(CLASSES[:2], [ClassSpec(id=9, name="loss"), CLASSES[1]])
    assert [spec.id for spec in merged] == [0, 1, 9]
    with pytest.raises(ConfigError, match="class 1"):
        merge_classes(CLASSES, [ClassSpec(id=1, name="cropland")])
    flagged = set_forest_classes(CLASSES, [0, 5])
    assert [spec.is_forest for spec in flagged] == [True, False, True]
    with pytest.raises(ConfigError, match=r"\[7\]"):
        set_forest_classes(CLASSES, [7])


def test_hectare_units() -> None:
    assert area_units(np.array([900.0]))[0] * 10_000 == 900 * AREA_UNITS_PER_HA // 10_000 * 10_000
