"""The training loop: seeded epochs of random chips, validation metrics, early stopping.

Each epoch draws ``chips_per_epoch`` random chips (scene by weight, then a
window uniformly inside its training area, or, with ``class_balanced``
sampling, a window around a pixel of a class drawn by its pixel count to a
power), applies a random flip/rotation and, optionally, a per-band gain and
offset jitter, and takes AdamW steps under a one-cycle learning-rate
schedule. After each epoch the model predicts every validation chip; per-class
IoU and Dice come from the summed confusion matrix. The weights of the epoch
with the best validation score (``validation_score``: mean IoU, or mean IoU
over the classes that have validation labels) are kept; training stops after
``early_stopping_patience`` epochs without improvement.

Everything random flows from ``seed`` (numpy generator, torch seeds), so two
runs with the same config, thread count and device give the same weights.
"""

from __future__ import annotations

import contextlib
import copy
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from tqdm import tqdm

from geoseg.change.metrics import confusion_matrix, mean_iou, per_class_dice, per_class_iou
from geoseg.errors import ConfigError
from geoseg.training.augment import radiometric_jitter, random_symmetry
from geoseg.training.config import TrainConfig
from geoseg.training.losses import build_loss
from geoseg.training.sampling import (
    IGNORE_INDEX,
    ClassPixels,
    TrainingScene,
    class_balanced_chips,
    index_class_pixels,
    random_chips,
    read_chip,
    read_validation_chip,
    validation_chips,
)


@dataclass(frozen=True)
class EpochRecord:
    """Scores of one epoch."""

    epoch: int
    train_loss: float
    validation_mean_iou: float
    validation_score: float
    validation_iou: list[float]
    validation_dice: list[float]
    seconds: float


@dataclass
class TrainingResult:
    """The best weights and the history of a training run."""

    state_dict: dict[str, torch.Tensor]
    best_epoch: int
    history: list[EpochRecord] = field(default_factory=list)
    duration_s: float = 0.0
    validation_matrix: NDArray[np.int64] | None = None


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` torch threads (None: as they are), then restore them.

    Training sets the thread count its config asks for; a notebook or test
    process that trains and then predicts keeps its own count afterwards (a
    forward pass's floating-point sums depend on it).
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, numpy and torch; return the generator that drives sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # third-party code may use the global state
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def select_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, or ``auto`` (cuda when available).

    Raises
    ------
    ConfigError
        ``cuda`` asked for but not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA device is available; use 'cpu'")
    return torch.device(name)


def _batch(
    chips: list[tuple[NDArray[np.float32], NDArray[np.int64]]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    inputs = torch.from_numpy(np.stack([chip[0] for chip in chips])).to(device)
    labels = torch.from_numpy(np.stack([chip[1] for chip in chips])).to(device)
    return inputs, labels


def _forward(model: nn.Module, inputs: torch.Tensor, bf16: bool) -> torch.Tensor:
    with torch.autocast(device_type=inputs.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits: torch.Tensor = model(inputs)
    return logits.float()


def validation_score(matrix: NDArray[np.int64], name: str) -> float:
    """The score that selects the kept epoch (see ``TrainConfig.validation_score``)."""
    if name == "mean_iou_labelled":
        labelled = matrix.sum(axis=1) > 0
        values = per_class_iou(matrix)[labelled]
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return mean_iou(matrix)


def _draw_batch(
    scenes: list[TrainingScene],
    pixels: list[ClassPixels] | None,
    config: TrainConfig,
    generator: np.random.Generator,
) -> list[tuple[NDArray[np.float32], NDArray[np.int64]]]:
    """One batch of augmented training chips (see the module docstring)."""
    if pixels is None:
        windows = random_chips(scenes, config.batch_size, config.chip_size, generator)
    else:
        windows = class_balanced_chips(
            scenes,
            pixels,
            config.batch_size,
            config.chip_size,
            config.class_balance_power,
            generator,
        )
    chips = [random_symmetry(*read_chip(scene, window), generator) for scene, window in windows]
    jitter = config.radiometric_jitter
    if jitter is None:
        return chips
    return [
        (
            radiometric_jitter(
                image, generator, gain_std=jitter.gain_std, offset_std=jitter.offset_std
            ),
            labels,
        )
        for image, labels in chips
    ]


def validate(
    model: nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    bf16: bool,
) -> NDArray[np.int64]:
    """Confusion matrix of ``model`` over validation batches (ignored pixels skipped)."""
    model.eval()
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    with torch.inference_mode():
        for inputs, labels in batches:
            prediction = _forward(model, inputs, bf16).argmax(dim=1)
            matrix += confusion_matrix(labels.cpu().numpy(), prediction.cpu().numpy(), num_classes)
    return matrix


def train_model(
    model: nn.Module,
    scenes: list[TrainingScene],
    config: TrainConfig,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainingResult:
    """Train ``model`` in place on chips of ``scenes``; return the best weights and history.

    Parameters
    ----------
    model
        An untrained module mapping ``(N, bands, H, W)`` to ``(N, classes, H, W)``.
    scenes
        Prepared scenes (:func:`geoseg.training.sampling.prepare_scene`).
    config
        The training config (chips, epochs, loss, seed, device...).
    progress
        Show a tqdm progress bar of the batches.
    log
        Called with one line per epoch (e.g. ``print``).
    """
    with torch_threads(config.threads):
        return _train_model(model, scenes, config, progress=progress, log=log)


def _train_model(
    model: nn.Module,
    scenes: list[TrainingScene],
    config: TrainConfig,
    *,
    progress: bool,
    log: Callable[[str], None] | None,
) -> TrainingResult:
    started = time.perf_counter()
    generator = seed_everything(config.seed)
    device = select_device(config.device)
    model.to(device)
    num_classes = len(config.classes)
    weights = None
    if config.class_weights is not None:
        weights = torch.tensor(config.class_weights, dtype=torch.float32, device=device)
    loss_function = build_loss(config.loss, ignore_index=IGNORE_INDEX, class_weights=weights)
    steps_per_epoch = max(1, config.chips_per_epoch // config.batch_size)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch
    )
    validation = [
        read_validation_chip(scene, chip, window)
        for scene, chip, window in validation_chips(scenes, config.chip_size)
    ]
    validation_batches = [
        _batch(validation[start : start + config.batch_size], device)
        for start in range(0, len(validation), config.batch_size)
    ]
    pixels = None
    if config.chip_sampling == "class_balanced":
        pixels = [index_class_pixels(scene, num_classes) for scene in scenes]
    result = TrainingResult(state_dict=copy.deepcopy(model.state_dict()), best_epoch=0)
    best_score = -1.0
    bar = tqdm(total=config.epochs * steps_per_epoch, disable=not progress, unit="batch")
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        losses: list[float] = []
        for _ in range(steps_per_epoch):
            inputs, labels = _batch(_draw_batch(scenes, pixels, config, generator), device)
            loss = loss_function(_forward(model, inputs, config.bf16_autocast), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}")
        matrix = validate(model, validation_batches, num_classes, config.bf16_autocast)
        score = validation_score(matrix, config.validation_score)
        record = EpochRecord(
            epoch=epoch,
            train_loss=float(np.mean(losses)),
            validation_mean_iou=mean_iou(matrix),
            validation_score=score,
            validation_iou=[float(value) for value in per_class_iou(matrix)],
            validation_dice=[float(value) for value in per_class_dice(matrix)],
            seconds=time.perf_counter() - epoch_start,
        )
        result.history.append(record)
        if log is not None:
            log(
                f"epoch {epoch}: loss {record.train_loss:.4f}, validation mean IoU "
                f"{record.validation_mean_iou:.4f}, {config.validation_score} {score:.4f}"
                f" ({record.seconds:.1f} s)"
            )
        if score > best_score:
            best_score = score
            result.best_epoch = epoch
            result.state_dict = copy.deepcopy(model.state_dict())
            result.validation_matrix = matrix
        elif epoch - result.best_epoch >= config.early_stopping_patience:
            if log is not None:
                log(f"early stop: no improvement since epoch {result.best_epoch}")
            break
    bar.close()
    model.load_state_dict(result.state_dict)
    model.eval()
    result.duration_s = time.perf_counter() - started
    return result
