"""Running an instance model over the global tile grid of a scene (or of a window of it).

Tiles are read and scaled exactly as for semantic prediction
(:func:`geoseg.predict.preprocess.normalize`, reflection past the border), run
through the detector (a CPU runs one tile per pass fastest, a GPU a whole batch)
and turned into :class:`~geoseg.predict.instances.Detection` values in scene
pixels. :func:`detect_batch` is the detection task of a run on Dask
(``workflows.predict_instances``): one batch of the plan's global tile order,
read as the semantic forward task reads it, through the per-process model cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from geoseg.grid import PixelWindow
from geoseg.io.instances import write_detections
from geoseg.models.card import InputScaling
from geoseg.predict.forward import batch_inputs
from geoseg.predict.inference import cached_model
from geoseg.predict.instances import Detection, InstanceSettings, detections_from_masks
from geoseg.predict.plan import PredictPlan
from geoseg.predict.preprocess import SceneStatistics, normalize, reflect_pad
from geoseg.predict.sources import RasterSource
from geoseg.predict.tiling import TileLayout

if TYPE_CHECKING:  # torch is imported by the workers that run the detector
    from torch import nn


@dataclass(frozen=True)
class ScaledSource:
    """A source with the scaling of a model card (and the scene's statistics for it)."""

    source: RasterSource
    scaling: InputScaling
    statistics: SceneStatistics | None


def read_tile(
    scene: ScaledSource, layout: TileLayout, index: int, origin: PixelWindow | None = None
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Scaled inputs ``(bands, tile, tile)`` and validity of tile ``index``.

    ``origin`` places the layout inside the scene (a window of it); by default
    the layout covers the whole scene.
    """
    window = layout.window(index)
    offset = window if origin is None else window.shift(origin.row, origin.col)
    physical, valid = scene.source.read(offset)
    inputs = normalize(physical, valid, scene.scaling, scene.statistics)
    inside = window.clip(layout.height, layout.width).shift(-window.row, -window.col)
    if inside.shape != window.shape:
        inputs, valid = reflect_pad(inputs, valid, inside)
    return inputs, valid


def detect_tile(
    module: nn.Module,
    inputs: NDArray[np.float32],
    valid: NDArray[np.bool_],
    layout: TileLayout,
    index: int,
    settings: InstanceSettings,
) -> list[Detection]:
    """The detections of one tile; mask pixels on invalid inputs are dropped."""
    return detect_tiles(module, inputs[None], valid[None], layout, [index], settings)


def detect_tiles(
    module: nn.Module,
    inputs: NDArray[np.float32],
    valid: NDArray[np.bool_],
    layout: TileLayout,
    indexes: Sequence[int],
    settings: InstanceSettings,
    *,
    device: str = "cpu",
    precision: str = "fp32",
) -> list[Detection]:
    """The detections of several tiles ``(tiles, bands, h, w)``, in the order given.

    Tiles without a valid pixel are skipped; mask pixels on invalid inputs are
    dropped. On the CPU one tile runs per forward pass, on CUDA all of them in
    one (with autocast for ``bf16`` / ``fp16``).
    """
    import torch

    from geoseg.predict.inference import autocast_dtype

    active = [position for position in range(len(indexes)) if valid[position].any()]
    step = 1 if device == "cpu" else max(1, len(active))
    dtype = autocast_dtype(precision)
    found: list[Detection] = []
    for start in range(0, len(active), step):
        group = active[start : start + step]
        images = [torch.from_numpy(np.ascontiguousarray(inputs[p])).to(device) for p in group]
        with (
            torch.inference_mode(),
            torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None),
        ):
            outputs = module(images)
        for position, output in zip(group, outputs, strict=True):
            masks = output["masks"][:, 0].float().cpu().numpy().astype(np.float32, copy=False)
            masks = np.where(valid[position][None], masks, np.float32(0.0))
            found += detections_from_masks(
                layout,
                indexes[position],
                masks,
                output["scores"].float().cpu().numpy().astype(np.float32),
                output["labels"].cpu().numpy().astype(np.int64) - 1,
                settings,
            )
    return found


def detect_batch(
    plan: PredictPlan, indexes: Sequence[int], settings: InstanceSettings
) -> list[Detection]:
    """The detection task: the detections of one batch of the plan's tiles.

    The tiles are read and scaled as the semantic forward task reads them
    (:func:`geoseg.predict.forward.batch_inputs`) and run through the model
    loaded once per process (:func:`geoseg.predict.inference.cached_model`) on
    the plan's device and precision. Detections are small (masks cropped to
    their boxes), so they travel back to the client.
    """
    inputs, valid = batch_inputs(plan, indexes)
    module = cached_model(plan.model).module
    module.eval()
    return detect_tiles(
        module,
        inputs,
        valid,
        plan.layout,
        indexes,
        settings,
        device=plan.model.device,
        precision=plan.precision,
    )


def detect_stored(
    plan: PredictPlan, indexes: Sequence[int], settings: InstanceSettings, path: Path
) -> list[Detection]:
    """:func:`detect_batch`, its detections also kept at ``path`` for a resumed run."""
    found = detect_batch(plan, indexes, settings)
    write_detections(path, found)
    return found


def detect_layout(
    module: nn.Module,
    scene: ScaledSource,
    layout: TileLayout,
    settings: InstanceSettings,
    *,
    origin: PixelWindow | None = None,
    tiles: Iterable[int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Detection]:
    """Detections of every tile of ``layout`` (or of ``tiles``), in tile order.

    Detections are in the layout's pixels (add ``origin`` for the scene's).
    """
    module.eval()
    found: list[Detection] = []
    for index in tiles if tiles is not None else range(layout.count):
        inputs, valid = read_tile(scene, layout, index, origin)
        found += detect_tile(module, inputs, valid, layout, index, settings)
        if progress is not None:
            progress(index)
    return found
