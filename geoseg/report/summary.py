"""The per-class area table of a class map."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.typing import NDArray

M2_PER_HA = 10_000.0


def class_area_table(
    class_ids: NDArray[np.integer],
    areas_m2: NDArray[np.floating],
    classes: Mapping[int, str],
) -> pd.DataFrame:
    """Area per class from polygons (or pixels): one row per class of ``classes``.

    Parameters
    ----------
    class_ids
        Class id of each polygon.
    areas_m2
        True ground area of each polygon in square metres.
    classes
        ``{id: name}`` of every class the model predicts; absent classes get 0.

    Returns
    -------
    pandas.DataFrame
        ``class_id``, ``class_name``, ``polygons``, ``area_m2``, ``area_ha`` and
        ``share_percent`` (of the mapped area), sorted by class id.
    """
    frame = pd.DataFrame({"class_id": np.asarray(class_ids, dtype=np.int64), "area": areas_m2})
    grouped = frame.groupby("class_id")["area"].agg(["count", "sum"])
    total = float(grouped["sum"].sum()) if len(grouped) else 0.0
    rows = []
    for class_id in sorted(classes):
        count = int(grouped["count"].get(class_id, 0))
        area = float(grouped["sum"].get(class_id, 0.0))
        rows.append(
            {
                "class_id": int(class_id),
                "class_name": classes[class_id],
                "polygons": count,
                "area_m2": area,
                "area_ha": area / M2_PER_HA,
                "share_percent": 100.0 * area / total if total > 0 else 0.0,
            }
        )
    return pd.DataFrame(rows)
