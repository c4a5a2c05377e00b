"""The paint task of an instance run: one chunk of the id raster, written with its overviews.

Instances are resolved once for the scene (:func:`geoseg.predict.instances.resolve_instances`);
:func:`paint_chunk` gets those touching its chunk, paints the chunk
(:func:`geoseg.predict.instances.paint_window`: the pixels do not depend on the
chunking), maps class positions to the card's class ids and writes the chunk's
two uint32 bands (``instance_id``, ``class_id``) and its share of every overview
level into the work directory, as the semantic chunk task does for labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from geoseg.grid import PixelWindow
from geoseg.predict.assemble import write_output_chunk
from geoseg.predict.instances import Instance, paint_window
from geoseg.predict.plan import PredictPlan

ID_KIND = "instances"
"""The work-directory name of the id raster's chunks."""


def chunk_ids(
    plan: PredictPlan, instances: Sequence[Instance], window: PixelWindow
) -> NDArray[np.uint32]:
    """Instance ids and card class ids ``(2, h, w)`` of ``window`` (0: no instance)."""
    ids, positions = paint_window(plan.layout, instances, window)
    lookup = np.array([0, *plan.class_ids], dtype=np.uint32)
    return np.stack([ids, lookup[positions]])


def paint_chunk(plan: PredictPlan, instances: Sequence[Instance], window: PixelWindow) -> int:
    """Paint ``window`` from ``instances`` (at least those touching it) and write it.

    Returns
    -------
    int
        The chunk's pixels covered by an instance.
    """
    data = chunk_ids(plan, instances, window)
    write_output_chunk(plan, window, ID_KIND, data)
    return int(np.count_nonzero(data[0]))
