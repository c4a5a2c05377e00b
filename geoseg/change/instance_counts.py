"""Objects per region: how many instances each region holds, and their ground area.

An instance belongs to the region that holds its representative point
(:func:`shapely.point_on_surface`, always inside the instance), so an object
across a region border is counted once, like a pixel that belongs to the
region holding its centre in :mod:`geoseg.change.counts`; regions may overlap
(the point is then counted in each). Its whole ground area (``area_m2`` of the
instance polygons) goes with it.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geoseg.change.regions import Regions

COLUMNS = ["region", "class", "instances", "area_ha", "mean_area_m2"]


def instance_counts(instances: gpd.GeoDataFrame, regions: Regions) -> pd.DataFrame:
    """One row per region and class: ``instances``, ``area_ha``, ``mean_area_m2``.

    ``instances`` are instance polygons in ``regions.crs`` with the columns
    ``class`` and ``area_m2`` (as :mod:`geoseg.vector.instances` writes them).
    Every region has a row for every class, with 0 where it holds none.
    """
    classes = sorted(set(instances["class"].astype(str)))
    points = shapely.point_on_surface(instances.geometry.to_numpy())
    tree = shapely.STRtree(np.asarray(regions.geometries, dtype=object))
    point_index, region_index = tree.query(points, predicate="intersects")
    hits = pd.DataFrame(
        {
            "region": [regions.ids[i] for i in region_index.tolist()],
            "class": instances["class"].astype(str).to_numpy()[point_index],
            "area_m2": instances["area_m2"].to_numpy(dtype=np.float64)[point_index],
        }
    )
    rows = []
    for region in regions.ids:
        for name in classes:
            inside = hits[(hits["region"] == region) & (hits["class"] == name)]
            count = len(inside)
            area = float(inside["area_m2"].sum())
            rows.append(
                {
                    "region": region,
                    "class": name,
                    "instances": count,
                    "area_ha": round(area / 10_000, 6),
                    "mean_area_m2": round(area / count, 2) if count else 0.0,
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)
