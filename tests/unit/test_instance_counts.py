"""Instances per region: counts and ground areas, regions in another CRS."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from click.testing import CliRunner
from shapely.geometry import box

from geoseg.cli import cli
from geoseg.errors import VectorReadError
from geoseg.io.instances import read_instances, write_instance_polygons


@pytest.mark.parametrize("suffix", [".gpkg", ".parquet"])
def test_count_instances_per_region(tmp_path: Path, suffix: str) -> None:
    x, y = 733601.0, 3724689.0  # UTM 16N, Atlanta
    instances = gpd.GeoDataFrame(
        {
            "instance_id": [1, 2, 3, 4],
            "class": ["building"] * 4,
            "area_m2": [100.0, 200.0, 50.0, 400.0],
        },
        geometry=[
            box(x + 10, y + 10, x + 20, y + 20),  # west region
            box(x + 30, y + 10, x + 40, y + 30),  # west region
            # across the border at x + 50, mostly east: its point on surface is east
            box(x + 48, y + 10, x + 58, y + 15),
            box(x + 200, y + 200, x + 220, y + 220),  # outside both regions
        ],
        crs="EPSG:32616",
    )
    polygons = tmp_path / f"instances{suffix}"
    write_instance_polygons(polygons, instances)
    regions = gpd.GeoDataFrame(
        {"id": ["west", "east"]},
        geometry=[box(x, y, x + 50, y + 100), box(x + 50, y, x + 100, y + 100)],
        crs="EPSG:32616",
    ).to_crs("EPSG:4326")
    regions.to_file(tmp_path / "regions.gpkg", driver="GPKG")
    out = tmp_path / "counts.csv"
    result = CliRunner().invoke(
        cli,
        [
            "count",
            "--instances",
            str(polygons),
            "--regions",
            str(tmp_path / "regions.gpkg"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out).set_index("region")
    assert table.loc["west", "instances"] == 2
    assert table.loc["west", "area_ha"] == pytest.approx(0.03)
    assert table.loc["west", "mean_area_m2"] == pytest.approx(150.0)
    assert table.loc["east", "instances"] == 1
    assert table.loc["east", "area_ha"] == pytest.approx(0.005)


def test_geoparquet_instances_are_checked_like_a_geopackage(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame({"class": ["building"]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:32616")
    frame.to_parquet(tmp_path / "no_area.parquet")
    with pytest.raises(VectorReadError, match=r"no field\(s\) \['area_m2'\]"):
        read_instances(tmp_path / "no_area.parquet")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(VectorReadError, match="not a readable GeoParquet file"):
        read_instances(tmp_path / "broken.parquet")
    with pytest.raises(VectorReadError, match="no such file"):
        read_instances(tmp_path / "missing.parquet")
