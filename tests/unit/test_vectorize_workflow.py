"""The vectorize workflow and command on small GeoTIFFs (Dask, GeoPackage, styles)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import dask.array as da
import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from numpy.typing import NDArray
from rasterio.features import shapes
from scipy import ndimage

from geoseg.areas import pixel_areas_m2
from geoseg.cli import cli
from geoseg.grid import RasterGrid
from tests.clusters import started_client, started_cluster
from workflows.vectorize import vectorize_file, vectorize_labels

TRANSFORM = Affine(30.0, 0.0, 300000.0, 0.0, -30.0, 4150000.0)
NAMES = {0: "other", 1: "forest", 2: "water"}


def class_map(seed: int = 7, shape: tuple[int, int] = (50, 64)) -> NDArray[np.uint8]:
    field = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 2.0)
    labels = np.digitize(field, np.quantile(field, [0.4, 0.8])).astype(np.uint8)
    labels[:6, :10] = 255
    return labels


@pytest.fixture
def labels_tif(tmp_path: Path) -> Callable[..., Path]:
    def write(labels: NDArray[np.uint8], name: str = "labels.tif") -> Path:
        path = tmp_path / name
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            height=labels.shape[0],
            width=labels.shape[1],
            count=1,
            dtype="uint8",
            crs="EPSG:32612",
            transform=TRANSFORM,
            nodata=255,
        ) as dataset:
            dataset.write(labels, 1)
            dataset.write_colormap(1, {0: (200, 200, 200), 1: (0, 120, 0), 2: (0, 0, 255)})
            dataset.update_tags(
                GEOSEG_CLASS_NAMES=json.dumps({str(key): value for key, value in NAMES.items()}),
                GEOSEG_MODEL="landcover-test",
            )
        return path

    return write


def whole_count(labels: NDArray[np.uint8]) -> int:
    return sum(1 for _ in shapes(labels, mask=labels != 255, connectivity=4))


def test_vectorize_file_matches_whole_raster_with_names_colours_and_styles(
    labels_tif: Callable[..., Path], tmp_path: Path
) -> None:
    labels = class_map()
    out = tmp_path / "out.gpkg"
    counts = vectorize_file(labels_tif(labels), out, chunk_size=16)
    assert counts == {"labels": whole_count(labels)}
    table = pyogrio.read_dataframe(out, layer="labels")
    assert table.crs.to_epsg() == 32612
    ground = pixel_areas_m2(RasterGrid(rasterio.crs.CRS.from_epsg(32612), TRANSFORM, *labels.shape))
    for class_id, name in NAMES.items():
        rows = table.loc[table["class_id"] == class_id]
        assert set(rows["class_name"]) == {name}
        assert rows["area_m2"].sum() == pytest.approx(ground[labels == class_id].sum())
    assert set(table["model"]) == {"landcover-test"}
    assert set(table["source"]) == {str(tmp_path / "labels.tif")}
    with sqlite3.connect(out) as connection:
        (style,) = connection.execute(
            "SELECT styleQML FROM layer_styles WHERE f_table_name = 'labels'"
        ).fetchone()
    assert 'value="0,120,0,255"' in style
    assert 'label="water"' in style


def test_layer_per_class_with_classes_and_min_area(
    labels_tif: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "out.gpkg"
    labels = class_map()
    counts = vectorize_file(
        labels_tif(labels),
        out,
        layer="map",
        classes=[1, 2],
        layer_per_class=True,
        min_area_m2=900.0 * 5,
        chunk_size=20,
    )
    assert set(counts) == {"map_forest", "map_water"}
    forest = pyogrio.read_dataframe(out, layer="map_forest")
    assert set(forest["class_id"]) == {1}
    assert (forest["area_m2"] >= 4500.0).all()


def test_all_nodata_raster_gives_an_empty_layer_with_schema(
    labels_tif: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "out.gpkg"
    counts = vectorize_file(labels_tif(np.full((30, 30), 255, dtype=np.uint8)), out, chunk_size=16)
    assert counts == {"labels": 0}
    info = pyogrio.read_info(out, layer="labels")
    assert info["features"] == 0
    assert info["geometry_type"] == "Polygon"
    assert list(info["fields"]) == [
        "class_id",
        "class_name",
        "area_m2",
        "area_ha",
        "perimeter_m",
        "source",
        "model",
        "run_time",
    ]


def test_probabilities_add_mean_probability(
    labels_tif: Callable[..., Path], tmp_path: Path
) -> None:
    labels = class_map()
    probabilities = np.stack(
        [np.full(labels.shape, 51 * (band + 1), dtype=np.uint8) for band in range(3)]
    )
    path = tmp_path / "probs.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=labels.shape[0],
        width=labels.shape[1],
        count=3,
        dtype="uint8",
        crs="EPSG:32612",
        transform=TRANSFORM,
    ) as dataset:
        dataset.write(probabilities)
    out = tmp_path / "out.gpkg"
    vectorize_file(labels_tif(labels), out, probabilities=path, chunk_size=16)
    table = pyogrio.read_dataframe(out, layer="labels")
    expected = table["class_id"].map({0: 0.2, 1: 0.4, 2: 0.6})
    np.testing.assert_allclose(table["mean_probability"], expected, atol=1e-6)


def test_vectorize_labels_on_a_lazy_array_with_simplification() -> None:
    labels = class_map(3, (60, 70))
    grid = RasterGrid(rasterio.crs.CRS.from_epsg(32612), TRANSFORM, 60, 70)
    lazy = da.from_array(labels, chunks=(13, 17))
    table = vectorize_labels(lazy, None, grid, simplify_m=45.0, class_names=NAMES)
    assert len(table) == whole_count(labels)
    assert table.geometry.is_valid.all()
    assert table["area_m2"].sum() == pytest.approx(pixel_areas_m2(grid)[labels != 255].sum())
    assert table.geometry.union_all().area == pytest.approx((labels != 255).sum() * 900.0)


def test_cli_vectorize_on_a_cluster(labels_tif: Callable[..., Path], tmp_path: Path) -> None:
    labels = class_map()
    out = tmp_path / "cli.gpkg"
    with started_cluster(1) as cluster:
        result = CliRunner().invoke(
            cli,
            [
                "vectorize",
                str(labels_tif(labels)),
                "--out",
                str(out),
                "--chunk-size",
                "16",
                "--classes",
                "0,1",
                "--classes",
                "2",
                "--scheduler",
                cluster.scheduler_address,
            ],
        )
    assert result.exit_code == 0, result.output
    assert f"layer labels: {whole_count(labels)} polygons" in result.output
    assert pyogrio.read_info(out, layer="labels")["features"] == whole_count(labels)


def test_cli_rejects_bad_class_ids(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["vectorize", "labels.tif", "--out", str(tmp_path / "x.gpkg"), "--classes", "1,x"]
    )
    assert result.exit_code == 2
    assert "class ids are integers 0-254, got 'x'" in result.output


def test_vectorize_labels_accepts_a_boolean_mask() -> None:
    mask = class_map(5, (40, 40)) == 1
    grid = RasterGrid(rasterio.crs.CRS.from_epsg(32612), TRANSFORM, 40, 40)
    table = vectorize_labels(da.from_array(mask, chunks=16), None, grid, classes=[1])
    assert set(table["class_id"]) == {1}
    assert len(table) == sum(1 for _ in shapes(mask.astype(np.uint8), mask=mask, connectivity=4))
    assert table["area_m2"].sum() == pytest.approx(pixel_areas_m2(grid)[mask].sum())


def test_polygon_order_on_a_cluster_is_the_task_order() -> None:
    # chunks finishing out of order must not reorder the polygons: the written
    # GeoPackage's bytes depend on it
    labels = class_map(3, (60, 70))
    grid = RasterGrid(rasterio.crs.CRS.from_epsg(32612), TRANSFORM, 60, 70)
    lazy = da.from_array(labels, chunks=(11, 9))
    local = vectorize_labels(lazy, None, grid)
    with started_client(1, threads_per_worker=4) as client:
        distributed = vectorize_labels(lazy, None, grid, client=client)
    assert list(distributed["class_id"]) == list(local["class_id"])
    assert all(
        a.equals_exact(b, 0) for a, b in zip(local.geometry, distributed.geometry, strict=True)
    )
