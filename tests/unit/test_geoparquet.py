"""GeoParquet 1.1 polygon outputs: geo metadata, covering bbox, same rows as the GeoPackage."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pytest
import shapely
from pyproj import CRS

from geoseg.cli import main
from geoseg.errors import InputError, OutputError
from geoseg.io.geoparquet import BBOX_COLUMN, GEOPARQUET_VERSION, write_geoparquet
from geoseg.io.vector import polygon_format
from geoseg.vector.features import feature_table
from tests.unit.test_vectorize_workflow import class_map, labels_tif  # noqa: F401
from workflows.vectorize import vectorize_file


def check_geoparquet(path: Path, gpkg: Path, layer: str) -> gpd.GeoDataFrame:
    """Assert ``path`` is GeoParquet 1.1 with a covering bbox and the rows of ``gpkg``."""
    metadata = json.loads(pq.read_schema(path).metadata[b"geo"])
    assert metadata["version"] == GEOPARQUET_VERSION == "1.1.0"
    column = metadata["columns"][metadata["primary_column"]]
    assert column["encoding"] == "WKB"
    assert column["covering"]["bbox"]["xmin"] == [BBOX_COLUMN, "xmin"]
    table = pq.read_table(path)
    frame = gpd.read_parquet(path)
    expected = pyogrio.read_dataframe(gpkg, layer=layer)
    assert CRS.from_json_dict(column["crs"]) == expected.crs == frame.crs
    assert [name for name in frame.columns if name != BBOX_COLUMN] == list(expected.columns)
    assert len(frame) == len(expected)
    for name in expected.columns.drop("geometry"):
        assert frame[name].tolist() == expected[name].tolist(), name
    assert shapely.equals(frame.geometry.array, expected.geometry.array).all()
    boxes = table.column(BBOX_COLUMN).combine_chunks()
    covering = np.column_stack(
        [boxes.field(name).to_numpy() for name in ("xmin", "ymin", "xmax", "ymax")]
    )
    np.testing.assert_array_equal(covering, frame.geometry.bounds.to_numpy())
    if len(frame):
        assert column["bbox"] == list(frame.total_bounds)
        assert set(column["geometry_types"]) == set(frame.geom_type)
    return frame


def test_vectorize_to_geoparquet_equals_the_geopackage(
    labels_tif: Callable[..., Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    raster = labels_tif(class_map())
    options = {"chunk_size": 16, "min_area_m2": 1800.0, "provenance": {"run_time": "2026-01-01"}}
    vectorize_file(raster, tmp_path / "out.gpkg", **options)  # type: ignore[arg-type]
    counts = vectorize_file(raster, tmp_path / "out.parquet", **options)  # type: ignore[arg-type]
    frame = check_geoparquet(tmp_path / "out.parquet", tmp_path / "out.gpkg", "labels")
    assert counts == {"labels": len(frame)} and len(frame) > 5
    assert not list(tmp_path.glob(".out.parquet*"))  # nothing left beside it


def test_all_nodata_raster_gives_an_empty_geoparquet_with_the_columns(
    labels_tif: Callable[..., Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    raster = labels_tif(np.full((30, 30), 255, dtype=np.uint8))
    vectorize_file(raster, tmp_path / "out.gpkg", chunk_size=16)
    assert vectorize_file(raster, tmp_path / "out.parquet", chunk_size=16) == {"labels": 0}
    frame = check_geoparquet(tmp_path / "out.parquet", tmp_path / "out.gpkg", "labels")
    assert len(frame) == 0 and "class_name" in frame.columns


def test_a_failure_mid_stream_leaves_the_previous_file(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame(
        {"class_id": [1, 2]}, geometry=[shapely.box(0, 0, 1, 1), shapely.box(2, 2, 4, 3)], crs=4326
    )
    out = tmp_path / "p.parquet"
    assert write_geoparquet(out, [feature_table(frame)]) == 2
    before = out.read_bytes()

    def failing() -> Iterator[pa.Table]:
        yield feature_table(frame)
        raise RuntimeError("worker died")

    with pytest.raises(RuntimeError, match="worker died"):
        write_geoparquet(out, failing())
    assert out.read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == ["p.parquet"]


def test_changed_columns_mid_stream_are_refused(tmp_path: Path) -> None:
    box = [shapely.box(0, 0, 1, 1)]
    first = feature_table(gpd.GeoDataFrame({"a": [1]}, geometry=box, crs=4326))
    other = feature_table(gpd.GeoDataFrame({"b": [1]}, geometry=box, crs=4326))
    with pytest.raises(OutputError, match="changed columns"):
        write_geoparquet(tmp_path / "x.parquet", [first, other])
    assert not (tmp_path / "x.parquet").exists()


def test_unknown_suffix_and_layer_per_class_are_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(OutputError, match=r"unknown polygon output format '\.shp'.*\.parquet"):
        polygon_format(tmp_path / "x.shp")
    assert polygon_format("X.GPKG") == "gpkg" and polygon_format("a.parquet") == "parquet"
    with pytest.raises(InputError, match="one layer"):  # raised before the raster is opened
        vectorize_file(tmp_path / "missing.tif", tmp_path / "x.parquet", layer_per_class=True)
    with pytest.raises(SystemExit) as exit_info:
        main(["vectorize", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "x.geojson")])
    assert exit_info.value.code != 0
    error = capsys.readouterr().err.strip()
    assert error.startswith("geoseg: error: ") and "\n" not in error
    assert "unknown polygon output format '.geojson'" in error  # not the missing raster


def test_leading_empty_tables_are_skipped_and_the_rows_keep_their_schema(tmp_path: Path) -> None:
    boxes = [shapely.box(0, 0, 1, 1), shapely.box(5, 5, 6, 8)]
    rows = gpd.GeoDataFrame({"class_id": [1, 2], "x": [0.5, 1.5]}, geometry=boxes, crs=32612)
    empty = feature_table(rows.iloc[:0].astype({"x": "int64"}))  # another dtype, no rows
    out = tmp_path / "p.parquet"
    assert write_geoparquet(out, [empty, feature_table(rows), empty]) == 2
    frame = gpd.read_parquet(out)
    assert frame["x"].tolist() == [0.5, 1.5] and frame.crs.to_epsg() == 32612
    metadata = json.loads(pq.read_schema(out).metadata[b"geo"])
    assert metadata["columns"]["geometry"]["bbox"] == [0.0, 0.0, 6.0, 8.0]
    assert metadata["columns"]["geometry"]["geometry_types"] == ["Polygon"]


def test_run_change_refuses_a_parquet_out_before_any_work(tmp_path: Path) -> None:
    from geoseg.bbox import make_bbox
    from workflows.run_change import run_change

    out = tmp_path / "change.parquet"
    with pytest.raises(OutputError, match=r"several layers; name it \.gpkg"):
        run_change(make_bbox((-93.3, 15.7, -93.2, 15.8)), "2000", "2002", regions="x", out=out)
    assert list(tmp_path.iterdir()) == []
