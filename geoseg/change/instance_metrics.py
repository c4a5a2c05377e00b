"""Scores of predicted instances against reference instances (instance-id rasters).

Matching follows COCO: predictions in decreasing score order each take the
unmatched reference instance they overlap most, when that IoU is at least
``iou`` (0.5). Mask AP50 is the area under the interpolated precision-recall
curve (COCO's 101 recall points); precision, recall and the count error are
those of every prediction given (already thresholded by score).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class InstanceScores:
    """Detection quality of one prediction against one reference."""

    predicted: int
    reference: int
    matched: int
    ap50: float
    precision: float
    recall: float
    count_error: float
    """(predicted - reference) / reference: the relative error of the object count."""
    mean_matched_iou: float

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready, rounded to 4 decimals."""
        return {
            name: round(value, 4) if isinstance(value, float) else value
            for name, value in self.__dict__.items()
        }


def pair_overlaps(
    predicted: NDArray[np.integer], reference: NDArray[np.integer]
) -> dict[tuple[int, int], int]:
    """Pixel counts of every (predicted id, reference id) pair, 0 for background."""
    codes = predicted.astype(np.int64).ravel() * (int(reference.max(initial=0)) + 1)
    codes += reference.astype(np.int64).ravel()
    values, counts = np.unique(codes, return_counts=True)
    base = int(reference.max(initial=0)) + 1
    return {(int(v) // base, int(v) % base): int(c) for v, c in zip(values, counts, strict=True)}


def match_instances(
    overlaps: Mapping[tuple[int, int], int], scores: Mapping[int, float], iou: float = 0.5
) -> list[tuple[int, int, float]]:
    """``(predicted, reference, IoU)`` matches, greedily by decreasing score."""
    predicted_area: dict[int, int] = {}
    reference_area: dict[int, int] = {}
    for (p, r), count in overlaps.items():
        predicted_area[p] = predicted_area.get(p, 0) + count
        reference_area[r] = reference_area.get(r, 0) + count
    taken: set[int] = set()
    matches = []
    for p in sorted((p for p in predicted_area if p), key=lambda p: (-scores[p], p)):
        best, best_iou = 0, 0.0
        for (pp, r), count in overlaps.items():
            if pp != p or r == 0 or r in taken:
                continue
            value = count / (predicted_area[p] + reference_area[r] - count)
            if value > best_iou or (value == best_iou and r < best):
                best, best_iou = r, value
        if best and best_iou >= iou:
            taken.add(best)
            matches.append((p, best, best_iou))
    return matches


def average_precision(hits: NDArray[np.bool_], references: int) -> float:
    """COCO 101-point interpolated AP of hits in decreasing score order."""
    if references == 0:
        return float("nan")
    if hits.size == 0:
        return 0.0
    true_positives = np.cumsum(hits)
    precision = true_positives / np.arange(1, hits.size + 1)
    recall = true_positives / references
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.linspace(0.0, 1.0, 101)
    positions = np.searchsorted(recall, points, side="left")
    sampled = np.where(positions < hits.size, envelope[np.minimum(positions, hits.size - 1)], 0.0)
    return float(sampled.mean())


def instance_scores(
    predicted: NDArray[np.integer],
    reference: NDArray[np.integer],
    scores: Mapping[int, float],
    iou: float = 0.5,
) -> InstanceScores:
    """AP50, precision, recall and count error of ``predicted`` against ``reference`` ids."""
    overlaps = pair_overlaps(predicted, reference)
    predicted_ids = sorted({p for p, _ in overlaps if p})
    reference_ids = {r for _, r in overlaps if r}
    matches = match_instances(overlaps, scores, iou)
    matched = {p for p, _, _ in matches}
    order = sorted(predicted_ids, key=lambda p: (-scores[p], p))
    hits = np.array([p in matched for p in order], dtype=bool)
    count, total = len(predicted_ids), len(reference_ids)
    return InstanceScores(
        predicted=count,
        reference=total,
        matched=len(matches),
        ap50=average_precision(hits, total),
        precision=len(matches) / count if count else float("nan"),
        recall=len(matches) / total if total else float("nan"),
        count_error=(count - total) / total if total else float("nan"),
        mean_matched_iou=float(np.mean([m[2] for m in matches])) if matches else float("nan"),
    )
