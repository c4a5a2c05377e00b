"""Panoptic maps: stuff classes of a semantic map and things of an instance map in one raster.

A panoptic raster has two bands (as an instance raster): ``instance_id`` (0
for stuff) and ``class_id``. Where an instance lies, its thing class and id
win; elsewhere the semantic class is kept with instance 0, and the semantic
map's nodata stays nodata (:data:`geoseg.labels.LABEL_NODATA`, ``void``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from geoseg.errors import InputError
from geoseg.labels import LABEL_NODATA


def merged_class_names(
    stuff: Mapping[int, str], things: Mapping[int, str], source: str
) -> dict[int, str]:
    """One class table for both maps.

    Raises
    ------
    InputError
        The same id names two different classes (the message names both).
    """
    for class_id, name in things.items():
        if class_id in stuff and stuff[class_id] != name:
            raise InputError(
                f"{source}: class id {class_id} is {stuff[class_id]!r} in the semantic map and "
                f"{name!r} in the instance map; give the instance model other class ids"
            )
    return {**stuff, **things}


def combine_panoptic(
    semantic: NDArray[np.integer],
    instance_ids: NDArray[np.integer],
    instance_classes: NDArray[np.integer],
) -> tuple[NDArray[np.uint32], NDArray[np.uint32]]:
    """Panoptic ``(instance ids, class ids)`` of one window; void stays ``LABEL_NODATA``."""
    things = instance_ids > 0
    classes = np.where(things, instance_classes, semantic).astype(np.uint32)
    classes[~things & (semantic == LABEL_NODATA)] = LABEL_NODATA
    return np.where(things, instance_ids, 0).astype(np.uint32), classes
