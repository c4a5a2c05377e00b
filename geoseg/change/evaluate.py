"""Scoring a predicted class raster against a reference raster, window by window.

Both rasters are read onto one grid: the prediction's grid clipped to where the
two overlap. The truth is read onto it directly when the grids are
pixel-aligned, else through a nearest-neighbour warp
(:func:`geoseg.io.warp.read_on_grid`); rasters that do not overlap are rejected.
Pixels that are nodata in either raster are excluded. Truth codes become class
ids through an optional class map (e.g. full NLCD codes to generalized
classes); prediction values are class ids. The confusion matrix is summed over
windows of ``window_size`` pixels, so memory does not grow with the scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from geoseg.change.classmap import ClassMap, apply_class_map, class_names_from_tags
from geoseg.change.metrics import SegmentationScores, confusion_matrix, scores
from geoseg.errors import InputError
from geoseg.io.raster import read_info
from geoseg.io.warp import common_grid, read_on_grid
from geoseg.labels import LABEL_NODATA, MAX_CLASS_ID

CODES = MAX_CLASS_ID + 1
"""Class ids 0..254 are counted; 255 (``LABEL_NODATA``) is nodata/excluded."""


@dataclass(frozen=True)
class Evaluation:
    """Scores of a prediction, the class ids of the matrix rows, and the pixels compared."""

    class_ids: tuple[int, ...]
    scores: SegmentationScores

    def to_dict(self) -> dict[str, object]:
        """JSON-ready scores with the class ids."""
        return {"class_ids": list(self.class_ids), **self.scores.to_dict()}


def _class_ids(values: NDArray[np.generic], valid: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Values as class ids 0..254; anything else (and invalid pixels) -> 255."""
    ids = values.astype(np.int64)
    keep = valid & (ids >= 0) & (ids < CODES) & (ids == values)
    return np.where(keep, ids, LABEL_NODATA)


def evaluate_rasters(
    prediction: str | Path,
    truth: str | Path,
    *,
    class_map: ClassMap | None = None,
    window_size: int = 1024,
) -> Evaluation:
    """Confusion matrix and scores of ``prediction`` against ``truth``.

    Parameters
    ----------
    prediction
        Class raster (band 1 holds class ids 0..254; nodata excluded).
    truth
        Reference raster on any grid that overlaps ``prediction``.
    class_map
        Maps truth codes to class ids; without it truth values are class ids.
    window_size
        Side of the windows the rasters are read in.

    Returns
    -------
    Evaluation
        Scores over the classes that occur in either raster (or the class map),
        named from the class map, else the prediction's ``GEOSEG_CLASS_NAMES``
        tag, else ``class <id>``.

    Raises
    ------
    GridMismatchError
        The rasters do not overlap.
    InputError
        No pixel is valid in both rasters.
    """
    prediction_info = read_info(prediction)
    truth_info = read_info(truth)
    grid = common_grid(
        prediction_info.grid,
        truth_info.grid,
        before_name=str(prediction),
        after_name=str(truth),
    )
    matrix = np.zeros((CODES, CODES), dtype=np.int64)
    for window in grid.chunks(window_size):
        predicted, predicted_valid = read_on_grid(prediction, grid, window)
        reference, reference_valid = read_on_grid(truth, grid, window)
        if class_map is not None:
            reference_ids = apply_class_map(reference, class_map, reference_valid).astype(np.int64)
        else:
            reference_ids = _class_ids(reference, reference_valid)
        predicted_ids = _class_ids(predicted, predicted_valid)
        matrix += confusion_matrix(reference_ids, predicted_ids, CODES)
    if matrix.sum() == 0:
        raise InputError(
            f"{prediction} and {truth}: no pixel holds data in both rasters (after the class "
            "map); check nodata values and the class map"
        )
    names = _class_names(prediction_info.tags, class_map, str(prediction))
    used = set(np.flatnonzero(matrix.sum(axis=0) + matrix.sum(axis=1)).tolist())
    if class_map is not None:
        used |= {rule.id for rule in class_map.classes}
    ids = sorted(used)
    sub = matrix[np.ix_(ids, ids)]
    return Evaluation(tuple(ids), scores(sub, [names.get(i, f"class {i}") for i in ids]))


def _class_names(tags: dict[str, str], class_map: ClassMap | None, source: str) -> dict[int, str]:
    if class_map is not None:
        return {rule.id: rule.name for rule in class_map.classes}
    return class_names_from_tags(tags, source) or {}
