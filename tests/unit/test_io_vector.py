"""GeoPackage writing (atomic, layer replacement, styles) and vector reading."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyogrio
import pytest
import shapely

from geoseg.errors import OutputError, VectorReadError
from geoseg.io import vector
from geoseg.io.vector import open_geopackage, read_vector, write_layers
from geoseg.vector.features import feature_table
from geoseg.vector.style import StyleCategory, categorized_style_qml

QGIS_STYLE_COLUMNS = [
    "id",
    "f_table_catalog",
    "f_table_schema",
    "f_table_name",
    "f_geometry_column",
    "styleName",
    "styleQML",
    "styleSLD",
    "useAsDefault",
    "description",
    "owner",
    "ui",
    "update_time",
]


def frame(count: int, class_id: int = 1) -> gpd.GeoDataFrame:
    boxes = [shapely.box(index, 0, index + 1, 1) for index in range(count)]
    return gpd.GeoDataFrame(
        {"class_id": [class_id] * count, "class_name": ["forest"] * count},
        geometry=boxes,
        crs="EPSG:32612",
    )


def qml() -> str:
    return categorized_style_qml("class_id", [StyleCategory(1, "forest", (0, 100, 0))])


def test_replacing_a_layer_keeps_the_others_and_their_styles(tmp_path: Path) -> None:
    path = tmp_path / "out.gpkg"
    write_layers(path, {"a": frame(3), "b": frame(2)}, styles={"a": qml(), "b": qml()})
    counts = write_layers(path, {"b": frame(5)}, styles={"b": qml()})
    assert counts == {"b": 5}
    assert pyogrio.read_info(path, layer="a")["features"] == 3
    assert pyogrio.read_info(path, layer="b")["features"] == 5
    assert pyogrio.read_info(path, layer="a")["crs"] == "EPSG:32612"
    with sqlite3.connect(path) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(layer_styles)")]
        styled = connection.execute(
            "SELECT f_table_name, useAsDefault FROM layer_styles ORDER BY f_table_name"
        ).fetchall()
        indexes = connection.execute(
            "SELECT table_name FROM gpkg_extensions WHERE extension_name = 'gpkg_rtree_index'"
        ).fetchall()
    assert columns == QGIS_STYLE_COLUMNS
    assert styled == [("a", 1), ("b", 1)]
    assert sorted(name for (name,) in indexes) == ["a", "b"]


def test_error_mid_write_leaves_the_file_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "out.gpkg"
    write_layers(path, {"a": frame(3), "b": frame(2)}, styles={"a": qml()})
    before = path.read_bytes()
    original = vector._write_table

    def write_half_then_fail(data: pa.Table, target: Path, layer: str, *, append: bool) -> None:
        original(data.slice(0, len(data) // 2), target, layer, append=append)
        raise RuntimeError("disk full (injected)")

    monkeypatch.setattr(vector, "_write_table", write_half_then_fail)
    with pytest.raises(RuntimeError, match="injected"):
        write_layers(path, {"b": frame(10)}, styles={"b": qml()})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gpkg"]
    assert pyogrio.read_info(path, layer="b")["features"] == 2


def test_error_in_streaming_writes_leaves_no_new_file(tmp_path: Path) -> None:
    path = tmp_path / "new.gpkg"
    with pytest.raises(ValueError, match="stop"), open_geopackage(path) as writer:
        writer.write("a", frame(2))
        raise ValueError("stop")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_empty_layer_keeps_its_schema(tmp_path: Path) -> None:
    path = tmp_path / "empty.gpkg"
    write_layers(path, {"none": frame(0)})
    info = pyogrio.read_info(path, layer="none")
    assert info["features"] == 0
    assert list(info["fields"]) == ["class_id", "class_name"]
    assert info["geometry_type"] == "Polygon"
    assert info["crs"] == "EPSG:32612"


def test_read_vector_errors_name_file_layer_and_field(tmp_path: Path) -> None:
    path = tmp_path / "regions.gpkg"
    write_layers(path, {"regions": frame(2)}, styles={"regions": qml()})
    assert len(read_vector(path, "regions", columns=["class_id"])) == 2
    assert len(read_vector(path)) == 2  # the styles table is never the default layer
    with pytest.raises(VectorReadError, match="no such file"):
        read_vector(tmp_path / "missing.gpkg")
    with pytest.raises(VectorReadError, match=r"no layer 'zones'.*\['regions', 'layer_styles'\]"):
        read_vector(path, "zones")
    with pytest.raises(VectorReadError, match=r"regions.*no field\(s\) \['name'\]"):
        read_vector(path, columns=["name"])
    garbage = tmp_path / "garbage.gpkg"
    garbage.write_bytes(b"not a geopackage")
    with pytest.raises(VectorReadError, match=r"garbage\.gpkg"):
        read_vector(garbage)


def test_buffered_writes_append_after_an_empty_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "stream.gpkg"
    with open_geopackage(path) as writer:
        writer.write("a", frame(0))
        for _ in range(3):
            writer.write("a", frame(4))
        writer.write("a", frame(0))
    assert writer.counts == {"a": 12}
    assert pyogrio.read_info(path, layer="a")["features"] == 12


def test_flushes_append_and_a_late_error_still_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "stream.gpkg"
    with open_geopackage(path, buffer_rows=5) as writer:
        for _ in range(4):
            writer.write("a", frame(3))
    assert pyogrio.read_info(path, layer="a")["features"] == 12
    before = path.read_bytes()
    calls: list[bool] = []
    original = vector._write_table

    def fail_on_append(data: pa.Table, target: Path, layer: str, *, append: bool) -> None:
        calls.append(append)
        if append:
            raise RuntimeError("disk full (injected)")
        original(data, target, layer, append=append)

    monkeypatch.setattr(vector, "_write_table", fail_on_append)
    with (
        pytest.raises(RuntimeError, match="injected"),
        open_geopackage(path, buffer_rows=5) as writer,
    ):
        for _ in range(4):
            writer.write("a", frame(3))
    assert calls == [False, True]
    assert path.read_bytes() == before


def test_feature_tables_write_like_frames_with_multipolygons_nan_and_types(
    tmp_path: Path,
) -> None:
    mixed = frame(3)
    mixed["area"] = [1.5, float("nan"), 3.0]
    mixed["count"] = np.array([1, 2, 3], dtype=np.int32)
    mixed.loc[2, "geometry"] = shapely.MultiPolygon(
        [shapely.box(5, 0, 6, 1), shapely.box(7, 0, 8, 1)]
    )
    path = tmp_path / "mixed.gpkg"
    with open_geopackage(path) as writer:
        writer.write_table("a", feature_table(mixed.iloc[:2]))  # polygons only so far
        writer.write("b", mixed)
    back = read_vector(path, "b")
    assert pyogrio.read_info(path, layer="b")["geometry_type"] == "MultiPolygon"
    assert list(back.geom_type) == ["MultiPolygon"] * 3  # promoted, as pyogrio does
    assert all(a.equals(b) for a, b in zip(back.geometry, mixed.geometry, strict=True))
    assert back["area"].isna().tolist() == [False, True, False]  # NaN written as NULL
    assert back["class_name"].tolist() == ["forest"] * 3
    with sqlite3.connect(path) as connection:
        types = dict((row[1], row[2]) for row in connection.execute("PRAGMA table_info(b)"))
    assert types["count"] == "MEDIUMINT" and types["area"] == "REAL"
    assert pyogrio.read_info(path, layer="a")["geometry_type"] == "Polygon"
    assert pyogrio.read_info(path, layer="a")["crs"] == "EPSG:32612"


def test_write_stream_writes_every_table_in_one_pass_with_the_index(tmp_path: Path) -> None:
    path = tmp_path / "stream.gpkg"
    tables = [feature_table(frame(count)) for count in (3, 0, 4)]
    with open_geopackage(path) as writer:
        writer.write_stream("a", iter(tables))
        writer.set_style("a", qml())
    assert writer.counts == {"a": 7}
    back = read_vector(path, "a")
    assert back.geometry.bounds["minx"].tolist() == [0, 1, 2, 0, 1, 2, 3]
    with sqlite3.connect(path) as connection:
        indexed = connection.execute('SELECT count(*) FROM "rtree_a_geom"').fetchone()
    assert indexed == (7,)


class ProducerError(Exception):
    pass


def test_write_stream_passes_producer_errors_on_and_leaves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "out.gpkg"
    write_layers(path, {"a": frame(2)})
    before = path.read_bytes()

    def tables() -> Iterator[pa.Table]:
        yield feature_table(frame(3))
        raise ProducerError("worker failed")

    with pytest.raises(ProducerError, match="worker failed"), open_geopackage(path) as writer:
        writer.write_stream("a", tables())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gpkg"]


def test_write_stream_after_an_empty_first_table_of_other_dtypes(tmp_path: Path) -> None:
    # a first chunk without finished polygons gives an empty object-dtype frame (null
    # columns in Arrow) while later chunks carry pandas string columns: once a crash in GDAL
    empty = frame(0).astype({"class_name": object})
    later = frame(3).astype({"class_name": "string"})
    tables = [feature_table(empty), feature_table(later)]
    path = tmp_path / "stream.gpkg"
    with open_geopackage(path) as writer:
        writer.write_stream("a", iter(tables))
    assert read_vector(path, "a")["class_name"].tolist() == ["forest"] * 3


def test_write_stream_refuses_tables_whose_columns_change(tmp_path: Path) -> None:
    path = tmp_path / "out.gpkg"
    write_layers(path, {"a": frame(2)})
    before = path.read_bytes()
    other = feature_table(frame(2).assign(extra=1.5))
    with (
        pytest.raises(OutputError, match="changed columns or types"),
        open_geopackage(path) as writer,
    ):
        writer.write_stream("a", iter([feature_table(frame(3)), other]))
    assert path.read_bytes() == before
