"""Panoptic quality (PQ, SQ, RQ) of a panoptic map against a reference (Kirillov et al. 2019).

A segment is a ``(class id, instance id)`` pair: each instance of a thing
class, and all the pixels of a stuff class (instance 0). Segments of the same
class match when their IoU exceeds 0.5 (such a match is unique). As in the
COCO panoptic API, pixels void in the reference (class ``LABEL_NODATA``) are
taken out of a predicted segment's union, and an unmatched predicted segment
more than half void is not a false positive. Per class::

    PQ = sum(IoU of matches) / (TP + FP / 2 + FN / 2) = SQ * RQ
    SQ = sum(IoU of matches) / TP,  RQ = TP / (TP + FP / 2 + FN / 2)

and PQ, SQ, RQ of the map are the means over the classes that occur in either
map (a class without a match has SQ 0, as in the COCO panoptic API).
:class:`PanopticCounts` is additive, so large rasters are scored window by window.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geoseg.labels import LABEL_NODATA

Segment = tuple[int, int]
"""``(class id, instance id)``; instance 0 for stuff."""


@dataclass
class PanopticCounts:
    """Pixel counts of segments and of their overlaps (add windows with ``+=``)."""

    pairs: Counter[tuple[Segment, Segment]] = field(default_factory=Counter)
    predicted: Counter[Segment] = field(default_factory=Counter)
    reference: Counter[Segment] = field(default_factory=Counter)
    predicted_void: Counter[Segment] = field(default_factory=Counter)

    def __iadd__(self, other: PanopticCounts) -> PanopticCounts:
        self.pairs.update(other.pairs)
        self.predicted.update(other.predicted)
        self.reference.update(other.reference)
        self.predicted_void.update(other.predicted_void)
        return self


def _segments(ids: NDArray[np.integer], classes: NDArray[np.integer]) -> NDArray[np.int64]:
    return classes.astype(np.int64).ravel() * 2**32 + ids.astype(np.int64).ravel()


def _segment(code: int) -> Segment:
    return (code // 2**32, code % 2**32)


def count_window(
    predicted_ids: NDArray[np.integer],
    predicted_classes: NDArray[np.integer],
    reference_ids: NDArray[np.integer],
    reference_classes: NDArray[np.integer],
) -> PanopticCounts:
    """The counts of one window (both maps on the same pixels)."""
    prediction = _segments(predicted_ids, predicted_classes)
    reference = _segments(reference_ids, reference_classes)
    predicted_valid = predicted_classes.ravel() != LABEL_NODATA
    reference_void = reference_classes.ravel() == LABEL_NODATA
    counts = PanopticCounts()
    both = predicted_valid & ~reference_void
    pairs, pair_counts = np.unique(
        np.stack([prediction[both], reference[both]]), axis=1, return_counts=True
    )
    for (p, r), count in zip(pairs.T.tolist(), pair_counts.tolist(), strict=True):
        counts.pairs[(_segment(p), _segment(r))] += count
    for codes, target in (
        (prediction[predicted_valid], counts.predicted),
        (reference[~reference_void], counts.reference),
        (prediction[predicted_valid & reference_void], counts.predicted_void),
    ):
        values, value_counts = np.unique(codes, return_counts=True)
        for code, count in zip(values.tolist(), value_counts.tolist(), strict=True):
            target[_segment(code)] += count
    return counts


@dataclass(frozen=True)
class PanopticQuality:
    """PQ, SQ, RQ of the map and per class (``nan`` where undefined)."""

    pq: float
    sq: float
    rq: float
    per_class: dict[int, dict[str, float]]

    def to_dict(self, names: dict[int, str] | None = None) -> dict[str, Any]:
        """JSON-ready (4 decimals, ``None`` for ``nan``); classes by name when given."""

        def clean(value: float) -> float | None:
            return round(value, 4) if np.isfinite(value) else None

        return {
            "pq": clean(self.pq),
            "sq": clean(self.sq),
            "rq": clean(self.rq),
            "per_class": {
                (names or {}).get(class_id, str(class_id)): {
                    key: clean(value) if isinstance(value, float) else value
                    for key, value in values.items()
                }
                for class_id, values in sorted(self.per_class.items())
            },
        }


def panoptic_quality(counts: PanopticCounts) -> PanopticQuality:
    """PQ, SQ and RQ from the accumulated counts (see the module docstring)."""
    matched_predicted: set[Segment] = set()
    matched_reference: set[Segment] = set()
    iou_sum: dict[int, float] = {}
    true_positives: Counter[int] = Counter()
    for (p, r), intersection in counts.pairs.items():
        if p[0] != r[0]:
            continue
        union = counts.predicted[p] + counts.reference[r] - intersection - counts.predicted_void[p]
        iou = intersection / union
        if iou > 0.5:
            matched_predicted.add(p)
            matched_reference.add(r)
            iou_sum[p[0]] = iou_sum.get(p[0], 0.0) + iou
            true_positives[p[0]] += 1
    false_positives: Counter[int] = Counter(
        p[0]
        for p, area in counts.predicted.items()
        if p not in matched_predicted and counts.predicted_void[p] <= area / 2
    )
    false_negatives: Counter[int] = Counter(
        r[0] for r in counts.reference if r not in matched_reference
    )
    per_class: dict[int, dict[str, float]] = {}
    for class_id in sorted({*true_positives, *false_positives, *false_negatives}):
        tp, fp, fn = true_positives[class_id], false_positives[class_id], false_negatives[class_id]
        denominator = tp + fp / 2 + fn / 2
        per_class[class_id] = {
            "pq": iou_sum.get(class_id, 0.0) / denominator,
            "sq": iou_sum.get(class_id, 0.0) / tp if tp else 0.0,
            "rq": tp / denominator,
            "tp": tp,
            "fp": fp,
            "fn": fn,
        }

    def mean(key: str) -> float:
        values = [v[key] for v in per_class.values()]
        return float(np.mean(values)) if values else float("nan")

    return PanopticQuality(mean("pq"), mean("sq"), mean("rq"), per_class)
