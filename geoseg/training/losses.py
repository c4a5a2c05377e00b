"""Segmentation losses: cross-entropy, Dice, Jaccard, and sums of them.

All losses take logits ``(N, C, H, W)`` and class indexes ``(N, H, W)`` and
honour ``ignore_index``: ignored pixels contribute nothing, neither to the
cross-entropy nor to the soft overlaps of Dice and Jaccard. Dice and Jaccard
are averaged over the classes present in the batch's labels, so an absent class
does not reward predicting nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch.nn import functional

from geoseg.errors import ConfigError

LossName = Literal["cross_entropy", "dice", "jaccard"]
LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SMOOTH = 1.0


def _soft_overlap(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class soft intersection, prediction sum, truth sum, and presence mask."""
    num_classes = logits.shape[1]
    valid = labels != ignore_index
    probabilities = logits.float().softmax(dim=1) * valid.unsqueeze(1)
    targets = functional.one_hot(torch.where(valid, labels, 0), num_classes)
    targets = targets.permute(0, 3, 1, 2).to(probabilities.dtype) * valid.unsqueeze(1)
    dims = (0, 2, 3)
    intersection = (probabilities * targets).sum(dims)
    predicted = probabilities.sum(dims)
    truth = targets.sum(dims)
    return intersection, predicted, truth, truth > 0


def cross_entropy_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy over labelled pixels (0 when no pixel is labelled)."""
    if not bool((labels != ignore_index).any()):
        return logits.sum() * 0.0
    return functional.cross_entropy(
        logits.float(), labels, weight=class_weights, ignore_index=ignore_index
    )


def dice_loss(logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int) -> torch.Tensor:
    """``1 - soft Dice``, averaged over the classes present in ``labels``."""
    intersection, predicted, truth, present = _soft_overlap(logits, labels, ignore_index)
    if not bool(present.any()):
        return logits.sum() * 0.0
    dice = (2 * intersection + SMOOTH) / (predicted + truth + SMOOTH)
    return 1 - dice[present].mean()


def jaccard_loss(logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int) -> torch.Tensor:
    """``1 - soft IoU``, averaged over the classes present in ``labels``."""
    intersection, predicted, truth, present = _soft_overlap(logits, labels, ignore_index)
    if not bool(present.any()):
        return logits.sum() * 0.0
    union = predicted + truth - intersection
    jaccard = (intersection + SMOOTH) / (union + SMOOTH)
    return 1 - jaccard[present].mean()


def build_loss(
    names: list[LossName],
    *,
    ignore_index: int,
    class_weights: torch.Tensor | None = None,
) -> LossFunction:
    """The sum of the named losses as one function ``(logits, labels) -> scalar``.

    Parameters
    ----------
    names
        Non-empty list of ``cross_entropy``, ``dice``, ``jaccard``.
    ignore_index
        Label value that no loss counts.
    class_weights
        Optional per-class weights of the cross-entropy.

    Raises
    ------
    ConfigError
        An empty list or an unknown name.
    """
    valid = ("cross_entropy", "dice", "jaccard")
    unknown = [name for name in names if name not in valid]
    if not names or unknown:
        raise ConfigError(f"loss must be a non-empty list of {', '.join(valid)}; got {names}")

    def total(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        parts: list[torch.Tensor] = []
        for name in names:
            if name == "cross_entropy":
                parts.append(
                    cross_entropy_loss(
                        logits, labels, ignore_index=ignore_index, class_weights=class_weights
                    )
                )
            elif name == "dice":
                parts.append(dice_loss(logits, labels, ignore_index=ignore_index))
            else:
                parts.append(jaccard_loss(logits, labels, ignore_index=ignore_index))
        return torch.stack(parts).sum()

    return total
