"""STAC Items beside the outputs of predict and vectorize, and the pure Item builder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import shapely
from affine import Affine
from pyproj import Transformer
from pystac.extensions.classification import ClassificationExtension
from pystac.extensions.projection import ProjectionExtension
from rasterio.crs import CRS

from geoseg import __version__
from geoseg.cli import main
from geoseg.grid import RasterGrid
from geoseg.report.stac import (
    COG_MEDIA_TYPE,
    PROCESSING_SCHEMA,
    OutputAsset,
    OutputClass,
    footprint,
    item_path,
    output_item,
)
from tests.clusters import started_cluster
from tests.conftest import write_geotiff
from tests.predict_fixtures import make_model_dir

GRID = RasterGrid(CRS.from_epsg(32612), Affine(30.0, 0.0, 300000.0, 0.0, -30.0, 4150000.0), 50, 64)
PROCESSED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def read_item(path: Path) -> pystac.Item:
    """The Item at ``path``, after a pystac round trip that must not change it."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    item = pystac.Item.from_dict(data)
    assert item.to_dict(include_self_link=False, transform_hrefs=False) == data
    assert ProjectionExtension.has_extension(item)
    assert PROCESSING_SCHEMA in item.stac_extensions
    assert item.properties["processing:software"] == {"geoseg": __version__}
    for asset in item.assets.values():  # relative hrefs to files beside the Item
        assert not Path(asset.href).is_absolute()
        assert (path.parent / asset.href).is_file()
    return item


def test_the_item_describes_grid_time_classes_processing_and_assets(tmp_path: Path) -> None:
    labels, gpkg, parquet = (tmp_path / name for name in ("l.tif", "p.gpkg", "p.parquet"))
    data = output_item(
        "l.tif",
        tmp_path,
        grid=GRID,
        assets={
            "labels": OutputAsset(labels, ("data",), "class labels"),
            "polygons": OutputAsset(gpkg),
            "table": OutputAsset(parquet),
            "quicklook": OutputAsset(tmp_path / "q.png", ("overview",)),
        },
        processed=PROCESSED,
        lineage="geoseg predict: scene.tif segmented by model m",
        start=datetime(2015, 8, 18, 17, 59),
        classes=[OutputClass(1, "non forest", (0, 128, 10)), OutputClass(4, "forest")],
    )
    item = pystac.Item.from_dict(data)
    assert item.id == "l.tif"
    assert item.datetime == datetime(2015, 8, 18, 17, 59, tzinfo=UTC)
    projection = ProjectionExtension.ext(item)
    assert projection.code == "EPSG:32612"
    assert projection.shape == [50, 64]
    assert projection.transform == [30.0, 0.0, 300000.0, 0.0, -30.0, 4150000.0]
    classes = ClassificationExtension.ext(item).classes
    assert classes is not None
    assert [(c.value, c.name, c.title, c.color_hint) for c in classes] == [
        (1, "non_forest", "non forest", "00800A"),
        (4, "forest", "forest", None),
    ]
    assert ClassificationExtension.get_schema_uri() in item.stac_extensions
    assert data["properties"]["processing:datetime"] == "2026-01-02T03:04:05Z"
    assert data["properties"]["processing:lineage"].startswith("geoseg predict: scene.tif")
    assert {key: (asset.href, asset.media_type) for key, asset in item.assets.items()} == {
        "labels": ("l.tif", COG_MEDIA_TYPE),
        "polygons": ("p.gpkg", "application/geopackage+sqlite3"),
        "table": ("p.parquet", "application/vnd.apache.parquet"),
        "quicklook": ("q.png", "image/png"),
    }
    assert item.assets["quicklook"].roles == ["overview"]
    assert COG_MEDIA_TYPE == "image/tiff; application=geotiff; profile=cloud-optimized"
    # the footprint is the grid's outline in lon/lat: every corner on it, the bbox around it
    footprint = shapely.geometry.shape(data["geometry"])
    to_lonlat = Transformer.from_crs(32612, 4326, always_xy=True)
    left, bottom, right, top = GRID.bounds
    for x, y in [(left, bottom), (left, top), (right, bottom), (right, top)]:
        corner = shapely.Point(to_lonlat.transform(x, y))
        assert footprint.exterior.distance(corner) < 1e-9
    assert footprint.exterior.is_ccw
    assert data["bbox"] == pytest.approx(list(footprint.bounds))
    assert item_path(labels) == tmp_path / "l.tif.stac.json"


def test_item_times_a_range_or_the_processing_time(tmp_path: Path) -> None:
    common: dict[str, Any] = {"grid": GRID, "assets": {}, "processed": PROCESSED, "lineage": "x"}
    ranged = output_item(
        "c", tmp_path, start=datetime(2019, 1, 1), end=datetime(2020, 1, 1), **common
    )
    assert ranged["properties"]["datetime"] is None
    assert ranged["properties"]["start_datetime"] == "2019-01-01T00:00:00Z"
    assert ranged["properties"]["end_datetime"] == "2020-01-01T00:00:00Z"
    unknown = output_item("c", tmp_path, **common)
    assert unknown["properties"]["datetime"] == "2026-01-02T03:04:05Z"
    assert "classification:classes" not in unknown["properties"]
    assert ClassificationExtension.get_schema_uri() not in unknown["stac_extensions"]


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    with started_cluster(1) as cluster:
        yield str(cluster.scheduler_address)


def test_predict_and_vectorize_write_an_item_beside_their_outputs(
    tmp_path: Path, scheduler: str
) -> None:
    model = make_model_dir(tmp_path / "model")
    data = np.random.default_rng(1).integers(0, 5000, (4, 80, 80)).astype(np.uint16)
    scene = write_geotiff(
        tmp_path / "scene.tif", data, descriptions=["B2_blue", "B3_green", "B4_red", "B5_nir"]
    )
    out = tmp_path / "out"
    out.mkdir()
    labels, probabilities = out / "labels.tif", out / "probabilities.tif"
    address = ["--scheduler", scheduler]
    options: list[str] = ["--tile", "64", "--overlap", "16", "--probabilities", str(probabilities)]
    main(["predict", str(scene), "--model", str(model), "--out", str(labels), *options, *address])
    item = read_item(out / "labels.tif.stac.json")
    assert item.id == "labels.tif"
    assert set(item.assets) == {"labels", "probabilities"}
    assert item.assets["probabilities"].media_type == COG_MEDIA_TYPE
    assert ProjectionExtension.ext(item).shape == [80, 80]
    classes = ClassificationExtension.ext(item).classes
    assert classes is not None and [c.value for c in classes] == [1, 4, 5]
    assert str(scene) in item.properties["processing:lineage"]
    assert "test-model" in item.properties["processing:lineage"]

    polygons = out / "labels.parquet"
    main(["vectorize", str(labels), "--out", str(polygons), "--chunk-size", "32", *address])
    item = read_item(out / "labels.parquet.stac.json")
    assert item.assets["polygons"].media_type == "application/vnd.apache.parquet"
    assert "labels.tif" in item.properties["processing:lineage"]
    assert ProjectionExtension.ext(item).transform == list(tuple(GRID.transform)[:6])
    classes = ClassificationExtension.ext(item).classes
    assert classes is not None and [c.value for c in classes] == [1, 4, 5]
    assert all(c.color_hint is not None for c in classes)  # from the COG's colour table

    # a failed command writes no Item (and leaves the earlier one alone)
    before = sorted(path.name for path in out.iterdir())
    with pytest.raises(SystemExit):
        main(["vectorize", str(labels), "--out", str(out / "x.gpkg"), "--mask", "none.tif"])
    assert sorted(path.name for path in out.iterdir()) == before


def test_a_footprint_across_the_antimeridian_is_split_in_two() -> None:
    # UTM zone 60 N (central meridian 177 E): 700-1000 km east reaches past 180
    grid = RasterGrid(
        CRS.from_epsg(32660), Affine(100.0, 0.0, 700000.0, 0.0, -100.0, 100000.0), 1000, 3000
    )
    geometry, bbox = footprint(grid)
    assert geometry["type"] == "MultiPolygon"
    parts = [shapely.geometry.shape(part) for part in shapely.geometry.shape(geometry).geoms]
    assert all(part.bounds[0] >= -180.0 and part.bounds[2] <= 180.0 for part in parts)
    assert all(part.exterior.is_ccw for part in parts)
    west, south, east, north = bbox
    assert 178.0 < west < 180.0 and -180.0 < east < -177.0 and west > east  # RFC 7946
    assert 0.0 <= south < north < 1.0
    # the two sides together cover the grid's outline: about 3 x 0.9 degrees
    assert sum(part.area for part in parts) == pytest.approx(300 * 100 / 111.32**2, rel=0.02)
    plain, plain_bbox = footprint(GRID)
    assert plain["type"] == "Polygon" and plain_bbox[0] < plain_bbox[2]
