"""Panoptic files: combine a class map and an instance map, score a panoptic map.

Both read the rasters window by window (the counts of
:mod:`geoseg.change.panoptic` are additive), so memory is bounded by the
window, not the scene.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from geoseg.change.classmap import class_names_from_tags
from geoseg.change.panoptic import PanopticCounts, PanopticQuality, count_window, panoptic_quality
from geoseg.errors import GridMismatchError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.io.instances import read_id_raster, write_id_cog
from geoseg.io.raster import read_info, read_window
from geoseg.predict.panoptic import combine_panoptic, merged_class_names


def _same_grid(first: Path, second: Path) -> RasterGrid:
    grid, other = read_info(first).grid, read_info(second).grid
    if (grid.crs, grid.transform, grid.shape) != (other.crs, other.transform, other.shape):
        raise GridMismatchError(
            f"{second}: not on the grid of {first} ({other.shape} vs {grid.shape} pixels, "
            "or another transform or CRS); predict both from the same image"
        )
    return grid


def combine_files(semantic: Path, instances: Path, out: Path, window_size: int = 1024) -> int:
    """Write the panoptic COG of a class map and an instance map; return the class count."""
    grid = _same_grid(semantic, instances)
    stuff = class_names_from_tags(read_info(semantic).tags, str(semantic)) or {}
    things = class_names_from_tags(read_info(instances).tags, str(instances)) or {}
    names = merged_class_names(stuff, things, str(instances))

    def pieces() -> Iterator[tuple[PixelWindow, NDArray[np.uint32], NDArray[np.uint32]]]:
        for window in grid.full_window.chunks(window_size):
            ids, classes, _ = read_id_raster(instances, window)
            labels = read_window(semantic, window, bands=[1])[0].astype(np.int64)
            yield (window, *combine_panoptic(labels, ids, classes))

    write_id_cog(out, grid, pieces(), task="panoptic", class_names=names)
    return len(names)


def evaluate_panoptic(
    prediction: Path, reference: Path, window_size: int = 1024
) -> PanopticQuality:
    """PQ, SQ and RQ of a panoptic (or instance) raster against a reference on its grid."""
    grid = _same_grid(prediction, reference)
    counts = PanopticCounts()
    for window in grid.full_window.chunks(window_size):
        predicted_ids, predicted_classes, _ = read_id_raster(prediction, window)
        reference_ids, reference_classes, _ = read_id_raster(reference, window)
        counts += count_window(predicted_ids, predicted_classes, reference_ids, reference_classes)
    return panoptic_quality(counts)
