"""Training an instance model (Mask R-CNN) from labelled polygons, each polygon one object.

Chips are read through the prediction path (:mod:`geoseg.training.sampling`),
drawn uniformly or, with ``chip_sampling: class_balanced``, each around a pixel
of an object (so that few, scattered objects are seen in most chips), turned
by one of the eight symmetries (and, with ``radiometric_jitter``, given a random
gain and offset), and each polygon burnt with its own id gives
the chip's objects (boxes, masks, classes). The detector's own losses (RPN
objectness and boxes, classifier, boxes, masks) are summed; AdamW with a
one-cycle schedule. The held-out windows are never trained on: they are scored
at the end with the shipped inference path (tiles, seam-free stitching) by
:func:`holdout_scores`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from numpy.typing import NDArray
from rasterio.features import rasterize
from torch import nn

from geoseg.change.instance_metrics import InstanceScores, instance_scores
from geoseg.grid import PixelWindow
from geoseg.predict.detect import ScaledSource, detect_layout
from geoseg.predict.instances import InstanceSettings, paint_window, resolve_instances
from geoseg.predict.tiling import make_layout
from geoseg.training.augment import radiometric_jitter, random_symmetry
from geoseg.training.config import TrainConfig
from geoseg.training.loop import seed_everything, torch_threads
from geoseg.training.sampling import (
    ClassPixels,
    TrainingScene,
    class_balanced_chips,
    index_class_pixels,
    random_chips,
    read_inputs,
)

MIN_OBJECT_PIXELS = 16
"""Objects with fewer pixels in a chip (slivers at its edge) are not targets."""


@dataclass(frozen=True)
class InstanceTrainingResult:
    """Weights after the last epoch, the mean loss of each epoch and the duration."""

    state_dict: dict[str, torch.Tensor]
    epoch_losses: tuple[float, ...]
    duration_s: float


def rasterize_instances(scene: TrainingScene, window: PixelWindow) -> NDArray[np.int32]:
    """Polygon ``k`` of the scene burnt as id ``k + 1`` on ``window`` (0: no object)."""
    if not scene.polygons:
        return np.zeros(window.shape, dtype=np.int32)
    burned: NDArray[np.int32] = rasterize(
        [(geometry, number + 1) for number, (geometry, _) in enumerate(scene.polygons)],
        out_shape=window.shape,
        transform=scene.grid.window_transform(window),
        fill=0,
        dtype="int32",
    )
    return burned


def chip_targets(ids: NDArray[np.int64], class_indexes: Sequence[int]) -> dict[str, torch.Tensor]:
    """A chip's targets as torchvision wants them.

    Boxes ``x0 y0 x1 y1`` in pixels, labels ``class index + 1``, uint8 masks.
    """
    boxes, labels, masks = [], [], []
    for object_id in np.unique(ids[ids > 0]):
        mask = ids == object_id
        if np.count_nonzero(mask) < MIN_OBJECT_PIXELS:
            continue
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
        labels.append(class_indexes[int(object_id) - 1] + 1)
        masks.append(mask)
    height, width = ids.shape
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": torch.from_numpy(
            np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)
        ).to(torch.uint8),
    }


def draw_chips(
    scenes: list[TrainingScene],
    pixels: list[ClassPixels] | None,
    count: int,
    config: TrainConfig,
    generator: np.random.Generator,
) -> list[tuple[TrainingScene, PixelWindow]]:
    """``count`` chip windows: uniform (``pixels`` None) or each holding an object pixel."""
    if pixels is None:
        return random_chips(scenes, count, config.chip_size, generator)
    return class_balanced_chips(
        scenes, pixels, count, config.chip_size, config.class_balance_power, generator
    )


def train_instances(
    module: nn.Module,
    scenes: list[TrainingScene],
    config: TrainConfig,
    *,
    log: Callable[[str], None] | None = None,
) -> InstanceTrainingResult:
    """Train ``module`` on random chips of the scenes' training windows (CPU)."""
    with torch_threads(config.threads):
        return _train_instances(module, scenes, config, log=log)


def _train_instances(
    module: nn.Module,
    scenes: list[TrainingScene],
    config: TrainConfig,
    *,
    log: Callable[[str], None] | None,
) -> InstanceTrainingResult:
    generator = seed_everything(config.seed)
    steps_per_epoch = -(-config.chips_per_epoch // config.batch_size)
    optimizer = torch.optim.AdamW(
        module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch
    )
    pixels = None
    if config.chip_sampling == "class_balanced":
        pixels = [index_class_pixels(scene, len(config.classes)) for scene in scenes]
    started = time.perf_counter()
    losses: list[float] = []
    module.train()
    for epoch in range(config.epochs):
        chips = draw_chips(scenes, pixels, steps_per_epoch * config.batch_size, config, generator)
        total = 0.0
        for step in range(steps_per_epoch):
            images, targets = [], []
            for scene, window in chips[step * config.batch_size : (step + 1) * config.batch_size]:
                inputs, _ = read_inputs(scene, window)
                classes = [index for _, index in scene.polygons]
                image, ids = random_symmetry(
                    inputs, rasterize_instances(scene, window).astype(np.int64), generator
                )
                if config.radiometric_jitter is not None:
                    jitter = config.radiometric_jitter
                    image = radiometric_jitter(
                        image, generator, gain_std=jitter.gain_std, offset_std=jitter.offset_std
                    )
                images.append(torch.from_numpy(image))
                targets.append(chip_targets(ids, classes))
            loss = torch.stack(list(module(images, targets).values())).sum()
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(module.parameters(), 10.0)
            optimizer.step()
            schedule.step()
            total += float(loss.detach())
        losses.append(total / steps_per_epoch)
        if log is not None:
            log(f"epoch {epoch + 1}/{config.epochs}: loss {losses[-1]:.4f}")
    module.eval()
    state = {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}
    return InstanceTrainingResult(state, tuple(losses), time.perf_counter() - started)


AP_MIN_SCORE = 0.05
"""Detections down to this score make the precision-recall curve of AP50 (torchvision's
default box score threshold); precision, recall and count error are those at the operating
``min_score``."""


def holdout_scores(
    module: nn.Module,
    scene: TrainingScene,
    window: PixelWindow,
    tile: int,
    overlap: int,
    settings: InstanceSettings,
) -> InstanceScores:
    """Score the model on ``window`` through the shipped tiled inference and stitching.

    Mask AP50 is computed over every detection scoring at least
    :data:`AP_MIN_SCORE`; precision, recall and the count error over the instances
    of ``settings.min_score``, as ``geoseg predict`` writes them.
    """
    layout = make_layout(window.height, window.width, tile, overlap)
    source = ScaledSource(scene.source, scene.scaling, scene.statistics)
    low = replace(settings, min_score=min(AP_MIN_SCORE, settings.min_score))
    detections = detect_layout(module, source, layout, low, origin=window)
    reference = rasterize_instances(scene, window)
    full = PixelWindow(0, 0, window.height, window.width)
    every = resolve_instances(layout, detections, low)
    curve = instance_scores(
        paint_window(layout, every, full)[0], reference, {i.id: i.score for i in every}
    )
    kept = [d for d in detections if d.score >= settings.min_score]
    instances = resolve_instances(layout, kept, settings)
    predicted, _ = paint_window(layout, instances, full)
    operating = instance_scores(predicted, reference, {i.id: i.score for i in instances})
    return replace(operating, ap50=curve.ap50)
