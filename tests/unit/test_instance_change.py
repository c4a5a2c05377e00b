"""Instances per region at two dates, beside the change tables of ``geoseg change``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from rasterio.crs import CRS
from shapely.geometry import box

from geoseg.change.classmap import preset_class_map
from geoseg.change.instance_counts import CHANGE_COLUMNS, instance_change, instance_counts
from geoseg.change.regions import Regions
from geoseg.cli import main
from geoseg.errors import VectorReadError
from geoseg.io.instances import write_instance_polygons
from tests.conftest import ORIGIN, UTM_CRS
from workflows.change import change_file

X, Y = ORIGIN  # the synthetic rasters' top-left corner (30 m pixels)
HEIGHT, WIDTH = 32, 40
FOREST = preset_class_map("forest")


def _objects(boxes: list[tuple[str, tuple[float, float, float, float]]]) -> gpd.GeoDataFrame:
    """Instance polygons at offsets from (X, Y - 600), with ``class`` and ``area_m2``."""
    shapes = [box(X + a, Y - 600 + b, X + c, Y - 600 + d) for _, (a, b, c, d) in boxes]
    return gpd.GeoDataFrame(
        {
            "instance_id": list(range(1, len(boxes) + 1)),
            "class": [name for name, _ in boxes],
            "area_m2": [shape.area for shape in shapes],
        },
        geometry=shapes,
        crs=UTM_CRS,
    )


# west region: x 0-300, east region: x 300-600 (offsets), both y 0-300
BEFORE = [
    ("building", (10, 10, 30, 20)),  # west, 200 m2
    ("building", (50, 50, 60, 60)),  # west, 100 m2
    ("building", (290, 100, 330, 110)),  # across the border, mostly east: 400 m2, east once
    ("tree", (400, 200, 405, 205)),  # east, 25 m2
    ("building", (900, 900, 910, 910)),  # outside both regions
]
AFTER = [
    ("building", (10, 10, 30, 20)),  # west, 200 m2
    ("building", (295, 100, 305, 110)),  # on the border, half and half: counted once
    ("building", (350, 10, 370, 20)),  # east, 200 m2
    ("building", (450, 10, 470, 20)),  # east, 200 m2
]


def _regions() -> Regions:
    shapes = (box(X, Y - 600, X + 300, Y - 300), box(X + 300, Y - 600, X + 600, Y - 300))
    return Regions(("west", "east"), shapes, CRS.from_user_input(UTM_CRS), "regions")


def test_instance_change_against_a_hand_count() -> None:
    table = instance_change(
        instance_counts(_objects(BEFORE), _regions()), instance_counts(_objects(AFTER), _regions())
    )
    assert list(table.columns) == CHANGE_COLUMNS
    rows = {(r.region, r["class"]): r for _, r in table.iterrows()}
    assert set(rows) == {(r, c) for r in ("west", "east") for c in ("building", "tree")}
    west, east = rows["west", "building"], rows["east", "building"]
    # hand count: the object split in half by the border (its representative point lies
    # on it) goes to the first region only, west: west 2 -> 2, east 1 -> 2
    assert shapely.point_on_surface(box(X + 295, 0, X + 305, 10)).x == X + 300
    assert (west.instances_before, west.instances_after, west.change) == (2, 2, 0)
    assert (east.instances_before, east.instances_after, east.change) == (1, 2, 1)
    assert west.area_ha_before == pytest.approx(0.03)  # 200 + 100 m2
    assert west.area_ha_after == pytest.approx(0.03)  # 200 + 100 m2
    assert east.area_ha_before == pytest.approx(0.04)  # 400 m2, across the border
    assert east.area_ha_after == pytest.approx(0.04)  # 200 + 200 m2
    tree = rows["east", "tree"]
    assert (tree.instances_before, tree.instances_after, tree.change) == (1, 0, -1)
    assert tree.area_ha_before == pytest.approx(0.0025) and tree.area_ha_after == 0.0
    assert rows["west", "tree"].instances_before == 0


@pytest.fixture
def dates(make_geotiff: Callable[..., Path], rng: np.random.Generator) -> tuple[Path, Path]:
    before = (rng.random((HEIGHT, WIDTH)) < 0.6).astype(np.uint8)
    after = before.copy()
    after[5:10, 5:20] = 0
    return make_geotiff(before, name="before.tif"), make_geotiff(after, name="after.tif")


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    regions = gpd.GeoDataFrame(
        {"name": ["west", "east"]}, geometry=list(_regions().geometries), crs=UTM_CRS
    )
    regions.to_file(tmp_path / "regions.gpkg", driver="GPKG")
    before, after = tmp_path / "before.gpkg", tmp_path / "after.gpkg"
    _objects(BEFORE).to_file(before, layer="instances", driver="GPKG")
    # AFTER's polygons in geographic coordinates: moved to the regions' CRS for counting
    _objects(AFTER).to_crs("EPSG:4326").to_file(after, layer="instances", driver="GPKG")
    return tmp_path / "regions.gpkg", before, after


def _argv(tmp_path: Path, rasters: tuple[Path, Path], *extra: str) -> list[str]:
    regions, _, _ = _files(tmp_path)
    return [
        "change",
        str(rasters[0]),
        str(rasters[1]),
        "--regions",
        str(regions),
        "--region-id-field",
        "name",
        "--out",
        str(tmp_path / "out.gpkg"),
        "--stats",
        str(tmp_path / "stats.csv"),
        "--class-map",
        "forest",
        *extra,
    ]


def test_cli_writes_the_instances_table(
    tmp_path: Path, dates: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, before, after = _files(tmp_path)
    main(_argv(tmp_path, dates, "--before-instances", str(before), "--after-instances", str(after)))
    assert "instances 4 before, 4 after" in capsys.readouterr().out
    csv = pd.read_csv(tmp_path / "stats.instances.csv")
    expected = instance_change(
        instance_counts(_objects(BEFORE), _regions()), instance_counts(_objects(AFTER), _regions())
    )
    assert list(csv.columns) == CHANGE_COLUMNS
    pd.testing.assert_frame_equal(csv, expected, check_dtype=False)
    layers = dict(pyogrio.list_layers(tmp_path / "out.gpkg"))
    assert "instances" in layers and layers["instances"] is None  # non-spatial
    stored = pyogrio.read_dataframe(tmp_path / "out.gpkg", layer="instances")
    pd.testing.assert_frame_equal(pd.DataFrame(stored), expected, check_dtype=False)
    assert (tmp_path / "stats.regions.csv").exists()


def test_geoparquet_instances_give_the_same_table(
    tmp_path: Path, dates: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, before, _ = _files(tmp_path)
    after = tmp_path / "after.parquet"
    write_instance_polygons(after, _objects(AFTER).to_crs("EPSG:4326"))
    main(_argv(tmp_path, dates, "--before-instances", str(before), "--after-instances", str(after)))
    assert "instances 4 before, 4 after" in capsys.readouterr().out
    expected = instance_change(
        instance_counts(_objects(BEFORE), _regions()), instance_counts(_objects(AFTER), _regions())
    )
    stored = pyogrio.read_dataframe(tmp_path / "out.gpkg", layer="instances")
    pd.testing.assert_frame_equal(pd.DataFrame(stored), expected, check_dtype=False)


def test_without_instances_there_is_no_table(tmp_path: Path, dates: tuple[Path, Path]) -> None:
    result = change_file(
        *dates,
        _files(tmp_path)[0],
        tmp_path / "out.gpkg",
        region_id_field="name",
        stats=tmp_path / "stats.csv",
        class_map=FOREST,
    )
    assert result.instances is None
    assert not (tmp_path / "stats.instances.csv").exists()
    assert "instances" not in dict(pyogrio.list_layers(tmp_path / "out.gpkg"))


def _nothing_written(tmp_path: Path) -> bool:
    names = {path.name for path in tmp_path.iterdir()}
    return not names & {"out.gpkg", "stats.csv", "stats.instances.csv"} and not any(
        ".partial" in name for name in names
    )


def test_missing_instance_file_is_one_line_before_any_work(
    tmp_path: Path, dates: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, before, _ = _files(tmp_path)
    missing = tmp_path / "nope.gpkg"
    argv = _argv(tmp_path, dates, "--before-instances", str(before))
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--after-instances", str(missing)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert f"{missing}: no such file" in error and len(error.splitlines()) == 1
    assert _nothing_written(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)  # one date only
    assert exit_info.value.code == 2
    assert "--after-instances" in capsys.readouterr().err
    assert _nothing_written(tmp_path)


def test_instances_without_area_are_refused(tmp_path: Path, dates: tuple[Path, Path]) -> None:
    regions, before, _ = _files(tmp_path)
    bare = tmp_path / "bare.gpkg"
    _objects(AFTER).drop(columns="area_m2").to_file(bare, layer="instances", driver="GPKG")
    with pytest.raises(VectorReadError, match=r"bare\.gpkg.*no field\(s\) \['area_m2'\]"):
        change_file(
            *dates,
            regions,
            tmp_path / "out.gpkg",
            region_id_field="name",
            stats=tmp_path / "stats.csv",
            class_map=FOREST,
            instances=(before, bare),
        )
    assert _nothing_written(tmp_path)
