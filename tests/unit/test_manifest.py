from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely

from geoseg.io.runs import write_attribute_table
from geoseg.io.staging import publish_file, read_json, write_json
from geoseg.io.vector import write_layers
from geoseg.report.manifest import (
    InputFile,
    ModelInfo,
    RunManifest,
    provenance_rows,
    run_id,
    run_time,
    software_versions,
)


def manifest(**overrides: object) -> RunManifest:
    data: dict[str, object] = {
        "command": "run",
        "run_id": "abc",
        "started": "2026-01-01T00:00:00Z",
        "inputs": [InputFile(id="zion", href="zion/x.tif", sha256="0" * 64)],
        "model": ModelInfo(name="m", weights_sha256="1" * 64),
        "parameters": {"tile": 64},
        "grid": {"shape": [2, 3]},
        "versions": {"python": "3.11"},
        "timings_s": {"total_s": 1.5},
    }
    data.update(overrides)
    return RunManifest.model_validate(data)


def test_run_id_is_canonical() -> None:
    first = run_id({"b": [1, 2], "a": {"y": 1, "x": 2}})
    assert first == run_id({"a": {"x": 2, "y": 1}, "b": [1, 2]})
    assert first != run_id({"a": {"x": 2, "y": 1}, "b": [2, 1]})
    assert len(first) == 64


def test_run_time_honours_source_date_epoch() -> None:
    now = datetime(2026, 3, 4, 5, 6, 7, 891, tzinfo=UTC)
    assert run_time({}, now) == "2026-03-04T05:06:07Z"
    assert run_time({"SOURCE_DATE_EPOCH": "0"}, now) == "1970-01-01T00:00:00Z"


def test_versions_name_the_libraries_that_shape_outputs() -> None:
    versions = software_versions()
    assert {"python", "gdal", "geoseg", "torch", "rasterio", "dask"} <= set(versions)


def test_provenance_rows_leave_timings_out() -> None:
    rows = provenance_rows(manifest())
    keys = [row["key"] for row in rows]
    assert "timings_s" not in keys and "inputs" in keys
    inputs = json.loads(next(row["value"] for row in rows if row["key"] == "inputs"))
    assert inputs == [{"href": "zion/x.tif", "id": "zion", "sha256": "0" * 64}]
    # timings do not change the rows
    assert provenance_rows(manifest(timings_s={"total_s": 99.0})) == rows


def test_json_round_trip(tmp_path: Path) -> None:
    path = write_json(tmp_path / "m.json", manifest().model_dump(mode="json"))
    assert RunManifest.model_validate(read_json(path)) == manifest()
    assert read_json(tmp_path / "missing.json") is None
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    assert read_json(tmp_path / "broken.json") is None


def _write_package(path: Path, stamp: str) -> None:
    frame = gpd.GeoDataFrame(
        {"class_id": [1, 2]},
        geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)],
        crs="EPSG:32612",
    )
    write_layers(path, {"classes": frame}, styles={"classes": "<qgis/>"}, timestamp=stamp)
    rows = pd.DataFrame(provenance_rows(manifest()))
    write_attribute_table(path, "run_manifest", rows, timestamp=stamp)
    write_attribute_table(path, "run_manifest", rows, timestamp=stamp)


def test_geopackage_tables_are_byte_identical_for_a_fixed_time(tmp_path: Path) -> None:
    _write_package(tmp_path / "a.gpkg", "2026-01-01T00:00:00Z")
    _write_package(tmp_path / "b.gpkg", "2026-01-01T00:00:00Z")
    assert (tmp_path / "a.gpkg").read_bytes() == (tmp_path / "b.gpkg").read_bytes()
    connection = sqlite3.connect(tmp_path / "a.gpkg")
    stamps = {row[0] for row in connection.execute("SELECT last_change FROM gpkg_contents")}
    styles = {row[0] for row in connection.execute("SELECT update_time FROM layer_styles")}
    tables = connection.execute("SELECT count(*) FROM run_manifest").fetchone()[0]
    connection.close()
    assert stamps == {"2026-01-01T00:00:00Z"} and styles == {"2026-01-01T00:00:00Z"}
    assert tables == len(provenance_rows(manifest()))  # replaced, not appended


def test_publish_replaces_atomically(tmp_path: Path) -> None:
    staged = tmp_path / "staged.bin"
    staged.write_bytes(b"new")
    final = tmp_path / "final.bin"
    final.write_bytes(b"old")
    publish_file(staged, final)
    assert final.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.bin", "staged.bin"]
