"""Instance outputs: the COG and the polygons are georeferenced exactly and agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import rasterio
from affine import Affine
from rasterio.crs import CRS

from geoseg.grid import RasterGrid
from geoseg.io.instances import read_id_raster, write_id_cog, write_instance_polygons
from geoseg.predict.instances import (
    InstanceSettings,
    detections_from_masks,
    paint_window,
    resolve_instances,
)
from geoseg.predict.tiling import make_layout
from geoseg.vector.instances import instance_polygons
from tests.unit.test_geoparquet import check_geoparquet

TRANSFORM = Affine(0.5, 0.0, 733601.0, 0.0, -0.5, 3725139.0)


def test_instance_cog_and_polygons_are_georeferenced_exactly(tmp_path: Path) -> None:
    grid = RasterGrid(CRS.from_epsg(32616), TRANSFORM, 80, 100)
    layout = make_layout(80, 100, 64, 16)
    masks = np.zeros((2, 64, 64), dtype=np.float32)
    masks[0, 10:20, 20:35] = 1.0  # 150 px
    masks[1, 40:44, 50:64] = 1.0  # cut by the right edge of tile 0 (columns 50-63)
    settings = InstanceSettings()
    detections = detections_from_masks(
        layout, 0, masks, np.array([0.9, 0.8], np.float32), np.zeros(2, np.int64), settings
    )
    right = np.zeros((1, 64, 64), dtype=np.float32)
    right[0, 40:44, 14:30] = 1.0  # tile 1 starts at column 36: columns 50-65 of the scene
    detections += detections_from_masks(
        layout, 1, right, np.array([0.7], np.float32), np.zeros(1, np.int64), settings
    )
    instances = resolve_instances(layout, detections, settings)
    assert len(instances) == 2

    raster = tmp_path / "instances.tif"
    chunks = [
        (window, *paint_window(layout, instances, window)) for window in grid.full_window.chunks(30)
    ]
    write_id_cog(raster, grid, chunks, task="instance", class_names={1: "building"})
    with rasterio.open(raster) as dataset:
        assert dataset.crs == grid.crs and dataset.transform == TRANSFORM
        assert dataset.shape == (80, 100) and dataset.dtypes == ("uint32", "uint32")
        assert dataset.tags()["GEOSEG_TASK"] == "instance"
        assert json.loads(dataset.tags()["GEOSEG_CLASS_NAMES"]) == {"1": "building"}
        assert dataset.descriptions == ("instance_id", "class_id")
    ids, classes, _ = read_id_raster(raster)
    assert np.count_nonzero(ids == 1) == 150 and np.count_nonzero(ids == 2) == 4 * 16
    assert np.array_equal(classes > 0, ids > 0)

    gpkg = tmp_path / "instances.gpkg"
    write_instance_polygons(gpkg, instance_polygons(layout, instances, grid, ["building"], [1]))
    frame = pyogrio.read_dataframe(gpkg, layer="instances")
    assert frame.crs.to_epsg() == 32616
    assert frame["instance_id"].tolist() == [1, 2]
    assert frame["class"].tolist() == ["building", "building"]
    first = frame.geometry.iloc[0]
    # pixel columns 20-34 and rows 10-19: edges exactly on the pixel grid
    assert first.bounds == (
        733601.0 + 20 * 0.5,
        3725139.0 - 20 * 0.5,
        733601.0 + 35 * 0.5,
        3725139.0 - 10 * 0.5,
    )
    assert first.area == 150 * 0.25
    # ground area: UTM's scale factor at this point (about 0.99962 here) squared, nothing else
    assert np.allclose(frame["area_m2"], frame.geometry.area, rtol=2e-3)
    assert frame.geometry.iloc[1].bounds[2] == 733601.0 + 66 * 0.5
    parquet = tmp_path / "instances.parquet"
    write_instance_polygons(parquet, instance_polygons(layout, instances, grid, ["building"], [1]))
    stored = check_geoparquet(parquet, gpkg, "instances")
    assert set(stored.geom_type) == {"MultiPolygon"}  # promoted, as in the GeoPackage
