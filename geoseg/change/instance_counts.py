"""Objects per region: how many instances each region holds, and their ground area.

An instance belongs to the region that holds its representative point
(:func:`shapely.point_on_surface`, always inside the instance), so an object
across a region border is counted once, like a pixel that belongs to the
region holding its centre in :mod:`geoseg.change.counts`; regions may overlap
(the point is then counted in each). A point exactly on a border between
regions (a rectangle split in half by it) goes to the first of them only.
Its whole ground area (``area_m2`` of the instance polygons) goes with it.
:func:`instance_change` puts the counts of two dates side by side, as
``geoseg change --before-instances --after-instances`` writes them beside the
change tables.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geoseg.change.regions import Regions

COLUMNS = ["region", "class", "instances", "area_ha", "mean_area_m2"]
CHANGE_COLUMNS = [
    "region",
    "class",
    "instances_before",
    "instances_after",
    "change",
    "area_ha_before",
    "area_ha_after",
]


def _holding_regions(points: np.ndarray, regions: Regions) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (point, region) of points inside regions; a point only on borders gets one."""
    geometries = np.asarray(regions.geometries, dtype=object)
    point_index, region_index = shapely.STRtree(geometries).query(points, predicate="intersects")
    inside = shapely.contains_properly(geometries[region_index], points[point_index])
    hits = pd.DataFrame({"point": point_index, "region": region_index, "inside": inside})
    hits = hits.sort_values(["point", "region"], kind="stable")
    any_inside = hits.groupby("point")["inside"].transform("any")
    first = ~hits.duplicated("point")
    kept = hits[hits["inside"] | (~any_inside & first)]
    return kept["point"].to_numpy(), kept["region"].to_numpy()


def instance_counts(instances: gpd.GeoDataFrame, regions: Regions) -> pd.DataFrame:
    """One row per region and class: ``instances``, ``area_ha``, ``mean_area_m2``.

    ``instances`` are instance polygons in ``regions.crs`` with the columns
    ``class`` and ``area_m2`` (as :mod:`geoseg.vector.instances` writes them).
    Every region has a row for every class, with 0 where it holds none.
    """
    classes = sorted(set(instances["class"].astype(str)))
    points = shapely.point_on_surface(instances.geometry.to_numpy())
    point_index, region_index = _holding_regions(points, regions)
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


def instance_change(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Two dates' :func:`instance_counts` side by side: one row per region and class.

    Columns ``instances_before``, ``instances_after``, ``change`` (after minus
    before), ``area_ha_before`` and ``area_ha_after``. Both tables must hold the
    same regions (in the same order); a class seen at one date only gets 0 at
    the other. Rows follow the regions' order, then the classes' names.
    """
    regions = list(dict.fromkeys([*before["region"], *after["region"]]))
    classes = sorted(set(before["class"].astype(str)) | set(after["class"].astype(str)))
    keys = pd.MultiIndex.from_product([regions, classes], names=["region", "class"])

    def aligned(counts: pd.DataFrame) -> pd.DataFrame:
        frame = counts.assign(**{"class": counts["class"].astype(str)})
        indexed = frame.set_index(["region", "class"])[["instances", "area_ha"]]
        return indexed.reindex(keys, fill_value=0)

    first, second = aligned(before), aligned(after)
    table = pd.DataFrame(
        {
            "instances_before": first["instances"].astype(np.int64),
            "instances_after": second["instances"].astype(np.int64),
            "area_ha_before": first["area_ha"].astype(np.float64),
            "area_ha_after": second["area_ha"].astype(np.float64),
        },
        index=keys,
    )
    table["change"] = table["instances_after"] - table["instances_before"]
    return table.reset_index()[CHANGE_COLUMNS]
