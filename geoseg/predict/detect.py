"""Running an instance model over the global tile grid of a scene (or of a window of it).

Tiles are read and scaled exactly as for semantic prediction
(:func:`geoseg.predict.preprocess.normalize`, reflection past the border), run
through the detector one at a time (a CPU runs one tile per pass fastest) and
turned into :class:`~geoseg.predict.instances.Detection` values in scene pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from geoseg.grid import PixelWindow
from geoseg.models.card import InputScaling
from geoseg.predict.instances import Detection, InstanceSettings, detections_from_masks
from geoseg.predict.preprocess import SceneStatistics, normalize, reflect_pad
from geoseg.predict.sources import RasterSource
from geoseg.predict.tiling import TileLayout


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
    if not valid.any():
        return []
    with torch.inference_mode():
        output = module([torch.from_numpy(inputs)])[0]
    masks = output["masks"][:, 0].numpy().astype(np.float32, copy=False)
    masks = np.where(valid[None], masks, np.float32(0.0))
    return detections_from_masks(
        layout,
        index,
        masks,
        output["scores"].numpy().astype(np.float32),
        output["labels"].numpy().astype(np.int64) - 1,
        settings,
    )


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
