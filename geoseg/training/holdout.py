"""Scoring on a held-out block, and the per-pixel random-forest baseline.

The test block is predicted window by window (each with a halo of image
context that carries no labels), and scored by summing confusion matrices.
The baseline is a scikit-learn random forest fitted on pixels drawn from
exactly the training windows the network sampled its chips from, with the
same scaled bands as features, so the two are compared on equal data.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.ensemble import RandomForestClassifier
from torch import nn

from geoseg.change.metrics import confusion_matrix
from geoseg.grid import PixelWindow
from geoseg.models.export import Probabilities
from geoseg.models.loading import LoadedModel
from geoseg.predict.inference import forward_probabilities
from geoseg.training.sampling import IGNORE_INDEX, TrainingScene, read_chip, read_inputs


def block_tiles(block: PixelWindow, size: int) -> list[PixelWindow]:
    """Windows of at most ``size`` x ``size`` covering ``block`` exactly once."""
    return [
        PixelWindow(row, col, size, size).intersection(block)
        for row in range(block.row, block.row_stop, size)
        for col in range(block.col, block.col_stop, size)
    ]


def predict_tile(
    module: nn.Module, scene: TrainingScene, tile: PixelWindow, halo: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Predicted and true class indexes of ``tile``, predicted with ``halo`` px of context."""
    inputs, _ = read_chip(scene, tile.pad(halo))
    _, labels = read_chip(scene, tile)
    with torch.inference_mode():
        logits = module(torch.from_numpy(inputs[None]))
    prediction = logits.argmax(dim=1)[0].numpy()
    inner = prediction[halo : halo + tile.height, halo : halo + tile.width]
    return inner.astype(np.int64), labels


def network_block_matrix(
    module: nn.Module,
    scene: TrainingScene,
    block: PixelWindow,
    num_classes: int,
    *,
    tile: int = 256,
    halo: int = 32,
) -> NDArray[np.int64]:
    """Confusion matrix of ``module`` over ``block`` of ``scene`` (class indexes)."""
    module.eval()
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    for window in block_tiles(block, tile):
        prediction, truth = predict_tile(module, scene, window, halo)
        matrix += confusion_matrix(truth, prediction, num_classes)
    return matrix


def halo_windows(
    blocks: Iterable[PixelWindow], tile: int, halo: int
) -> Iterator[tuple[PixelWindow, PixelWindow]]:
    """``(read window, inner window)`` of every ``tile`` px piece of ``blocks``.

    The read window is the fixed ``tile + 2 * halo`` square around the piece,
    as the inference path reads it.
    """
    side = tile + 2 * halo
    for block in blocks:
        for window in block_tiles(block, tile):
            yield PixelWindow(window.row - halo, window.col - halo, side, side), window


def validation_agreement(
    reference: Probabilities,
    candidates: Mapping[str, Probabilities],
    scenes: list[TrainingScene],
    *,
    tile: int = 256,
    halo: int = 32,
) -> tuple[dict[str, float], int]:
    """Share of valid validation pixels each candidate labels as ``reference`` does.

    Every validation window is predicted in ``tile`` px pieces, each read with
    ``halo`` px of context (:func:`halo_windows`); labels are compared on the
    pieces' valid pixels.

    Returns
    -------
    tuple[dict[str, float], int]
        The agreement of each candidate and the number of valid pixels it was
        measured on (1.0 each and 0 when the windows hold no valid pixel).
    """
    agreeing = dict.fromkeys(candidates, 0)
    counted = 0
    for scene in scenes:
        for read, window in halo_windows(scene.validation_windows, tile, halo):
            inputs, valid = read_inputs(scene, read)
            inner = (slice(halo, halo + window.height), slice(halo, halo + window.width))
            mask = valid[inner]
            expected = reference(inputs[None])[0].argmax(axis=0)[inner]
            for name, candidate in candidates.items():
                found = candidate(inputs[None])[0].argmax(axis=0)[inner]
                agreeing[name] += int(np.count_nonzero((found == expected) & mask))
            counted += int(np.count_nonzero(mask))
    shares = {name: (value / counted if counted else 1.0) for name, value in agreeing.items()}
    return shares, counted


def cpu_bf16_agreement(
    loaded: LoadedModel, scenes: list[TrainingScene], *, tile: int = 256, halo: int = 32
) -> tuple[float, int]:
    """Share of valid validation pixels labelled alike under CPU bf16 autocast and fp32.

    :func:`validation_agreement` of the bf16 forward against the fp32 one (as
    the inference path runs them: channels-last, autocast). The module is left
    in evaluation mode and in channels-last memory format, as
    :func:`~geoseg.predict.inference.cached_model` runs it.

    Returns
    -------
    tuple[float, int]
        The agreement and the number of valid pixels it was measured on
        (``(1.0, 0)`` when the validation windows hold no valid pixel).
    """
    loaded.module.eval()
    loaded.module.to(memory_format=torch.channels_last)
    shares, counted = validation_agreement(
        lambda inputs: forward_probabilities(loaded, inputs, "cpu", "fp32"),
        {"bf16": lambda inputs: forward_probabilities(loaded, inputs, "cpu", "bf16")},
        scenes,
        tile=tile,
        halo=halo,
    )
    return shares["bf16"], counted


def sample_training_pixels(
    scenes: list[TrainingScene],
    count: int,
    generator: np.random.Generator,
    *,
    tile: int = 256,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Up to ``count`` labelled pixels ``(features, labels)`` from the training windows.

    Each scene contributes in proportion to its ``weight`` (as for chips); the
    pixels of a scene are drawn uniformly from its labelled training pixels.
    """
    weights = np.array([scene.weight for scene in scenes], dtype=float)
    quotas = np.floor(count * weights / weights.sum()).astype(int)
    features: list[NDArray[np.float32]] = []
    labels: list[NDArray[np.int64]] = []
    for scene, quota in zip(scenes, quotas, strict=True):
        scene_features: list[NDArray[np.float32]] = []
        scene_labels: list[NDArray[np.int64]] = []
        for window in scene.train_windows:
            for part in block_tiles(window, tile):
                inputs, truth = read_chip(scene, part)
                keep = truth != IGNORE_INDEX
                scene_features.append(inputs[:, keep].T)
                scene_labels.append(truth[keep])
        all_features = np.concatenate(scene_features)
        all_labels = np.concatenate(scene_labels)
        take = min(int(quota), all_labels.size)
        chosen = generator.choice(all_labels.size, size=take, replace=False)
        features.append(all_features[chosen])
        labels.append(all_labels[chosen])
    return np.concatenate(features), np.concatenate(labels)


def fit_random_forest(
    features: NDArray[np.float32], labels: NDArray[np.int64], *, trees: int, seed: int
) -> RandomForestClassifier:
    """A random forest of ``trees`` trees fitted on pixel features (2 jobs)."""
    forest = RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=2)
    forest.fit(features, labels)
    return forest


def forest_block_matrix(
    forest: RandomForestClassifier,
    scene: TrainingScene,
    block: PixelWindow,
    num_classes: int,
    *,
    tile: int = 256,
) -> NDArray[np.int64]:
    """Confusion matrix of the pixel classifier ``forest`` over ``block`` of ``scene``."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    for window in block_tiles(block, tile):
        inputs, truth = read_chip(scene, window)
        flat = inputs.reshape(inputs.shape[0], -1).T
        prediction = np.asarray(forest.predict(flat), dtype=np.int64).reshape(truth.shape)
        matrix += confusion_matrix(truth, prediction, num_classes)
    return matrix


def summarise_regions(per_region: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """``per_region`` scores plus ``mean`` (over regions) and ``worst`` (the lowest kappa's).

    ``per_region`` maps each region left out of training to its forest-class
    ``kappa``, ``f1`` and ``iou`` (and possibly pixel counts); ``worst`` names
    its region, as ``metrics.held_out_regions`` of a card records them.
    """
    keys = ("kappa", "f1", "iou")
    mean = {key: round(float(np.mean([s[key] for s in per_region.values()])), 4) for key in keys}
    worst_region = min(per_region, key=lambda region: per_region[region]["kappa"])
    worst = {key: per_region[worst_region][key] for key in keys}
    return {**per_region, "mean": mean, "worst": {**worst, "region": worst_region}}
