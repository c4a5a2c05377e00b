"""Instance polygons: each instance's painted pixels as one (multi)polygon with attributes.

Pixels are those of the instance raster (:func:`geoseg.predict.instances.paint_window`
over the instance's box), traced with rasterio's polygonizer in the scene CRS,
so polygons and raster agree pixel for pixel; areas are ground areas
(:func:`geoseg.areas.polygon_ground_areas_m2`).
"""

from __future__ import annotations

from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from rasterio.features import shapes

from geoseg.areas import polygon_ground_areas_m2
from geoseg.grid import RasterGrid
from geoseg.predict.instances import Instance, InstanceIndex, paint_window
from geoseg.predict.tiling import TileLayout


def instance_polygons(
    layout: TileLayout,
    instances: Sequence[Instance],
    grid: RasterGrid,
    class_names: Sequence[str],
    class_ids: Sequence[int],
) -> gpd.GeoDataFrame:
    """One row per instance: ``instance_id``, ``class_id``, ``class``, ``score``, ``area_m2``."""
    geometries = []
    near = InstanceIndex(instances)
    for instance in instances:
        ids, _ = paint_window(layout, near(instance.window), instance.window)
        mask = ids == instance.id
        pieces = [
            shapely.geometry.shape(geometry)
            for geometry, value in shapes(
                mask.astype(np.uint8),
                mask=mask,
                transform=grid.window_transform(instance.window),
                connectivity=4,
            )
            if value == 1
        ]
        geometries.append(shapely.union_all(pieces) if len(pieces) > 1 else pieces[0])
    array = np.array(geometries, dtype=object)
    return gpd.GeoDataFrame(
        {
            "instance_id": np.array([i.id for i in instances], dtype=np.int64),
            "class_id": np.array([class_ids[i.class_index] for i in instances], dtype=np.int64),
            "class": pd.Series([class_names[i.class_index] for i in instances], dtype="string"),
            "score": np.array([round(i.score, 4) for i in instances], dtype=np.float64),
            "area_m2": polygon_ground_areas_m2(array, grid),
        },
        geometry=list(array),
        crs=grid.crs,
    )
