"""Segmentation metrics from a confusion matrix: pure functions over numpy arrays.

The confusion matrix is the one sufficient statistic: rows are the true class,
columns the predicted class, both in *class index* order (0..n-1). Matrices of
separate windows or batches add up, so a scene is scored by streaming windows
through :func:`confusion_matrix` and summing. Every score is derived from the
summed matrix, never averaged over windows.

A class absent from both truth and prediction has an undefined IoU/Dice; it is
reported as ``nan`` and left out of the means.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from geoseg.errors import InputError

ConfusionMatrix = NDArray[np.int64]


def confusion_matrix(
    truth: NDArray[np.integer], prediction: NDArray[np.integer], num_classes: int
) -> ConfusionMatrix:
    """Count ``(true, predicted)`` pairs of class indexes.

    Pixels whose truth or prediction lies outside ``0..num_classes-1`` (nodata,
    ignore values such as -1 or 255) are not counted.

    Parameters
    ----------
    truth, prediction
        Class indexes of the same shape.
    num_classes
        Number of classes ``n``.

    Returns
    -------
    numpy.ndarray
        ``(n, n)`` int64 counts; ``[i, j]`` = pixels of class ``i`` predicted ``j``.
    """
    if truth.shape != prediction.shape:
        raise InputError(f"truth {truth.shape} and prediction {prediction.shape} differ in shape")
    truth_flat = truth.reshape(-1).astype(np.int64)
    prediction_flat = prediction.reshape(-1).astype(np.int64)
    keep = (truth_flat >= 0) & (truth_flat < num_classes)
    keep &= (prediction_flat >= 0) & (prediction_flat < num_classes)
    codes = truth_flat[keep] * num_classes + prediction_flat[keep]
    counts = np.bincount(codes, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def _ratio(numerator: NDArray[np.float64], denominator: NDArray[np.float64]) -> NDArray[np.float64]:
    """``numerator / denominator`` with ``nan`` where the denominator is 0."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1e-300), np.nan)


def per_class_iou(matrix: ConfusionMatrix) -> NDArray[np.float64]:
    """Intersection over union of each class (``nan`` for a class never seen)."""
    counts = matrix.astype(np.float64)
    hits = np.diag(counts)
    return _ratio(hits, counts.sum(axis=0) + counts.sum(axis=1) - hits)


def per_class_dice(matrix: ConfusionMatrix) -> NDArray[np.float64]:
    """Dice coefficient (= F1 score) of each class (``nan`` for a class never seen)."""
    counts = matrix.astype(np.float64)
    return _ratio(2 * np.diag(counts), counts.sum(axis=0) + counts.sum(axis=1))


def per_class_precision(matrix: ConfusionMatrix) -> NDArray[np.float64]:
    """Precision (user's accuracy) of each class (``nan`` if never predicted)."""
    counts = matrix.astype(np.float64)
    return _ratio(np.diag(counts), counts.sum(axis=0))


def per_class_recall(matrix: ConfusionMatrix) -> NDArray[np.float64]:
    """Recall (producer's accuracy) of each class (``nan`` if absent from the truth)."""
    counts = matrix.astype(np.float64)
    return _ratio(np.diag(counts), counts.sum(axis=1))


def f1_score(matrix: ConfusionMatrix, class_index: int) -> float:
    """F1 of one class against all others (equal to its Dice)."""
    return float(per_class_dice(matrix)[class_index])


def mean_iou(matrix: ConfusionMatrix) -> float:
    """Mean IoU over the classes present in truth or prediction."""
    values = per_class_iou(matrix)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def overall_accuracy(matrix: ConfusionMatrix) -> float:
    """Share of counted pixels whose prediction equals the truth."""
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total else float("nan")


def cohen_kappa(matrix: ConfusionMatrix) -> float:
    """Cohen's kappa: agreement beyond the agreement expected by chance (``nan`` if empty)."""
    total = float(matrix.sum())
    if not total:
        return float("nan")
    observed = float(np.trace(matrix)) / total
    expected = float((matrix.sum(axis=1) * matrix.sum(axis=0)).sum()) / total**2
    return (observed - expected) / (1.0 - expected) if expected < 1.0 else float("nan")


def one_against_rest(matrix: ConfusionMatrix, class_index: int) -> ConfusionMatrix:
    """The 2 x 2 matrix of one class against all others (index 1 is the class)."""
    hit = int(matrix[class_index, class_index])
    truth = int(matrix[class_index].sum())
    predicted = int(matrix[:, class_index].sum())
    rest = int(matrix.sum()) - truth - predicted + hit
    return np.array([[rest, predicted - hit], [truth - hit, hit]], dtype=np.int64)


@dataclass(frozen=True)
class SegmentationScores:
    """Every score of one confusion matrix, with class names for reporting."""

    class_names: tuple[str, ...]
    matrix: ConfusionMatrix

    @property
    def iou(self) -> NDArray[np.float64]:
        """Per-class IoU."""
        return per_class_iou(self.matrix)

    @property
    def dice(self) -> NDArray[np.float64]:
        """Per-class Dice (= F1)."""
        return per_class_dice(self.matrix)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary (``None`` for undefined values)."""

        def clean(value: float) -> float | None:
            return round(float(value), 4) if np.isfinite(value) else None

        precision = per_class_precision(self.matrix)
        recall = per_class_recall(self.matrix)
        per_class = {
            name: {
                "iou": clean(self.iou[index]),
                "dice": clean(self.dice[index]),
                "f1": clean(self.dice[index]),
                "precision": clean(precision[index]),
                "recall": clean(recall[index]),
                "pixels": int(self.matrix[index].sum()),
            }
            for index, name in enumerate(self.class_names)
        }
        return {
            "mean_iou": clean(mean_iou(self.matrix)),
            "overall_accuracy": clean(overall_accuracy(self.matrix)),
            "pixels": int(self.matrix.sum()),
            "per_class": per_class,
            "confusion_matrix": self.matrix.tolist(),
        }


def scores(matrix: ConfusionMatrix, class_names: list[str] | tuple[str, ...]) -> SegmentationScores:
    """Bundle ``matrix`` with its class names (one name per row).

    Raises
    ------
    InputError
        When the number of names differs from the matrix size.
    """
    if matrix.shape != (len(class_names), len(class_names)):
        raise InputError(
            f"a {matrix.shape} confusion matrix needs {matrix.shape[0]} class names, "
            f"got {len(class_names)}"
        )
    return SegmentationScores(tuple(class_names), matrix)
