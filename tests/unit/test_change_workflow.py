"""The change workflow on small synthetic rasters: outputs, chunk invariance, bad input."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine

from geoseg.change.classmap import preset_class_map
from geoseg.change.regions import EmptyRegionWarning
from geoseg.cli import main
from geoseg.errors import GridMismatchError, InputError, VectorReadError
from tests.clusters import started_client, started_cluster
from workflows.change import change_file

ORIGIN_X, ORIGIN_Y = 300000.0, 4150000.0
HEIGHT, WIDTH = 48, 64
FOREST = preset_class_map("forest")


@pytest.fixture
def two_dates(make_geotiff: Callable[..., Path], rng: np.random.Generator) -> tuple[Path, Path]:
    before = (rng.random((HEIGHT, WIDTH)) < 0.6).astype(np.uint8)
    after = before.copy()
    after[10:20, 5:30] = 0  # a cleared block
    after[rng.random((HEIGHT, WIDTH)) < 0.05] = 255  # clouds
    return (
        make_geotiff(before, name="before.tif", nodata=255),
        make_geotiff(after, name="after.tif", nodata=255),
    )


def _write_regions(path: Path, boxes: dict[str, tuple[float, float, float, float]]) -> Path:
    frame = gpd.GeoDataFrame(
        {"name": list(boxes)},
        geometry=[shapely.box(*box) for box in boxes.values()],
        crs="EPSG:32612",
    )
    frame.to_file(path, driver="GPKG")
    return path


def _halves(tmp_path: Path) -> Path:
    middle = ORIGIN_X + WIDTH * 30 / 2
    bottom = ORIGIN_Y - HEIGHT * 30
    return _write_regions(
        tmp_path / "regions.gpkg",
        {
            "west": (ORIGIN_X, bottom, middle, ORIGIN_Y),
            "east": (middle, bottom, ORIGIN_X + WIDTH * 30, ORIGIN_Y),
            "all": (ORIGIN_X - 100, bottom - 100, ORIGIN_X + WIDTH * 30 + 100, ORIGIN_Y + 100),
        },
    )


def test_outputs_layers_tables_and_tags(tmp_path: Path, two_dates: tuple[Path, Path]) -> None:
    before, after = two_dates
    out, stats = tmp_path / "change.gpkg", tmp_path / "stats.csv"
    result = change_file(
        before,
        after,
        _halves(tmp_path),
        out,
        region_id_field="name",
        stats=stats,
        class_map=FOREST,
        chunk_size=20,
    )
    layers = {name for name, _ in pyogrio.list_layers(out)}
    assert {"regions", "deforestation", "change_grid"} <= layers
    regions = gpd.read_file(out, layer="regions").set_index("region_id")
    assert list(regions.index) == ["west", "east", "all"]
    # overlapping regions: "all" is the sum of the halves
    assert (
        regions.loc["all", "valid_pixels"]
        == regions.loc["west", "valid_pixels"] + regions.loc["east", "valid_pixels"]
    )
    assert regions.loc["all", "deforestation_ha"] == pytest.approx(
        regions.loc["west", "deforestation_ha"] + regions.loc["east", "deforestation_ha"], rel=1e-12
    )
    polygons = gpd.read_file(out, layer="deforestation")
    assert len(polygons) > 0
    assert all(
        tag and set(tag.split(",")) <= {"west", "east", "all"} for tag in polygons.region_ids
    )
    # polygon ground areas (EPSG:6933 is equal-area on WGS 84) match the pixel statistics
    assert polygons.to_crs("EPSG:6933").geometry.area.sum() == pytest.approx(
        regions.loc["all", "deforestation_ha"] * 10_000, rel=1e-4
    )
    classes = pd.read_csv(stats)
    assert set(classes.columns) >= {"region_id", "class_name", "area_before_ha", "iou", "dice"}
    assert len(classes) == 3 * 2
    transitions = pd.read_csv(tmp_path / "stats.transitions.csv")
    assert set(transitions.columns) >= {"from_class", "to_class", "area_ha"}
    assert (tmp_path / "stats.regions.csv").exists()
    assert result.tables == (
        stats,
        tmp_path / "stats.transitions.csv",
        tmp_path / "stats.regions.csv",
    )
    grid = gpd.read_file(out, layer="change_grid")
    assert grid.grid_crs.iloc[0] == "EPSG:32612" and grid.grid_height.iloc[0] == HEIGHT


def test_statistics_do_not_depend_on_chunk_size(
    tmp_path: Path, two_dates: tuple[Path, Path]
) -> None:
    before, after = two_dates
    regions = _halves(tmp_path)
    results = [
        change_file(
            before,
            after,
            regions,
            tmp_path / f"c{size}.gpkg",
            region_id_field="name",
            class_map=FOREST,
            chunk_size=size,
        )
        for size in (7, 16, 1000)
    ]
    for other in results[1:]:
        assert other.statistics.classes.equals(results[0].statistics.classes)
        assert other.statistics.transitions.equals(results[0].statistics.transitions)
        assert other.statistics.regions.equals(results[0].statistics.regions)


def test_excluded_pixels_are_counted(tmp_path: Path, two_dates: tuple[Path, Path]) -> None:
    before, after = two_dates
    result = change_file(
        before,
        after,
        _halves(tmp_path),
        tmp_path / "c.gpkg",
        region_id_field="name",
        class_map=FOREST,
    )
    row = result.statistics.regions.set_index("region_id").loc["all"]
    with rasterio.open(after) as dataset:
        clouds = int((dataset.read(1) == 255).sum())
    assert row.excluded_pixels == clouds
    assert row.valid_pixels == HEIGHT * WIDTH - clouds


def _assert_nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "out.gpkg").exists()
    assert not (tmp_path / "stats.csv").exists()
    assert not [path for path in tmp_path.iterdir() if ".partial" in path.name]


def test_regions_outside_the_rasters(tmp_path: Path, two_dates: tuple[Path, Path]) -> None:
    regions = _write_regions(tmp_path / "far.gpkg", {"far": (0, 0, 1000, 1000)})
    with pytest.raises(InputError, match="no region overlaps"):
        change_file(
            *two_dates,
            regions,
            tmp_path / "out.gpkg",
            region_id_field="name",
            stats=tmp_path / "stats.csv",
            class_map=FOREST,
        )
    _assert_nothing_written(tmp_path)


def test_rasters_without_overlap(
    tmp_path: Path, make_geotiff: Callable[..., Path], two_dates: tuple[Path, Path]
) -> None:
    elsewhere = make_geotiff(
        np.ones((8, 8), np.uint8),
        name="elsewhere.tif",
        transform=Affine(30, 0, 900000, 0, -30, 4150000),
    )
    with pytest.raises(GridMismatchError, match=r"before\.tif and .*elsewhere\.tif do not overlap"):
        change_file(
            two_dates[0],
            elsewhere,
            _halves(tmp_path),
            tmp_path / "out.gpkg",
            stats=tmp_path / "stats.csv",
            class_map=FOREST,
        )
    _assert_nothing_written(tmp_path)


def test_invalid_region_geometry(tmp_path: Path, two_dates: tuple[Path, Path]) -> None:
    bowtie = shapely.Polygon(
        [
            (ORIGIN_X, ORIGIN_Y),
            (ORIGIN_X + 600, ORIGIN_Y - 600),
            (ORIGIN_X + 600, ORIGIN_Y),
            (ORIGIN_X, ORIGIN_Y - 600),
        ]
    )
    path = tmp_path / "bad.gpkg"
    gpd.GeoDataFrame({"name": ["bowtie"]}, geometry=[bowtie], crs="EPSG:32612").to_file(path)
    with pytest.raises(InputError, match=r"bad\.gpkg: region 'bowtie' has an invalid geometry"):
        change_file(
            *two_dates,
            path,
            tmp_path / "out.gpkg",
            region_id_field="name",
            stats=tmp_path / "stats.csv",
            class_map=FOREST,
        )
    _assert_nothing_written(tmp_path)


def test_missing_id_field(tmp_path: Path, two_dates: tuple[Path, Path]) -> None:
    with pytest.raises(VectorReadError, match=r"'CODE'.*\['name'\]"):
        change_file(
            *two_dates,
            _halves(tmp_path),
            tmp_path / "out.gpkg",
            region_id_field="CODE",
            stats=tmp_path / "stats.csv",
            class_map=FOREST,
        )
    _assert_nothing_written(tmp_path)


def test_previous_output_survives_an_error(tmp_path: Path, two_dates: tuple[Path, Path]) -> None:
    out = tmp_path / "out.gpkg"
    out.write_bytes(b"previous")
    with pytest.raises(VectorReadError):
        change_file(*two_dates, _halves(tmp_path), out, region_id_field="CODE", class_map=FOREST)
    assert out.read_bytes() == b"previous"


def test_one_empty_region_warns_and_keeps_its_row(
    tmp_path: Path, two_dates: tuple[Path, Path]
) -> None:
    regions = _write_regions(
        tmp_path / "regions.gpkg",
        {
            "inside": (ORIGIN_X, ORIGIN_Y - 600, ORIGIN_X + 600, ORIGIN_Y),
            "outside": (0, 0, 100, 100),
        },
    )
    with pytest.warns(EmptyRegionWarning, match=r"\['outside'\]"):
        result = change_file(
            *two_dates, regions, tmp_path / "out.gpkg", region_id_field="name", class_map=FOREST
        )
    row = result.statistics.regions.set_index("region_id").loc["outside"]
    assert row.valid_pixels == 0 and row.excluded_pixels == 0
    assert len(gpd.read_file(tmp_path / "out.gpkg", layer="regions")) == 2


@pytest.fixture(scope="module")
def scheduler_address() -> Iterator[str]:
    with started_cluster(1, threads_per_worker=2) as cluster:
        yield cluster.scheduler_address


def test_cli_on_a_dask_cluster(
    tmp_path: Path,
    two_dates: tuple[Path, Path],
    scheduler_address: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, stats = tmp_path / "cli.gpkg", tmp_path / "cli.parquet"
    argv = [
        "change",
        str(two_dates[0]),
        str(two_dates[1]),
        "--regions",
        str(_halves(tmp_path)),
        "--region-id-field",
        "name",
        "--out",
        str(out),
        "--stats",
        str(stats),
        "--class-map",
        "forest",
        "--chunk-size",
        "16",
        "--forest-classes",
        "1",
        "--scheduler",
        scheduler_address,
    ]
    main(argv)
    assert "3 regions" in capsys.readouterr().out
    local = change_file(
        *two_dates,
        _halves(tmp_path),
        tmp_path / "local.gpkg",
        region_id_field="name",
        class_map=FOREST,
    )
    assert pd.read_parquet(stats).equals(local.statistics.classes)
    assert len(gpd.read_file(out, layer="deforestation")) == len(local.deforestation)


def test_cli_reports_bad_input_without_traceback(
    tmp_path: Path,
    two_dates: tuple[Path, Path],
    scheduler_address: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [
        "change",
        str(two_dates[0]),
        str(two_dates[1]),
        "--regions",
        str(_halves(tmp_path)),
        "--region-id-field",
        "CODE",
        "--out",
        str(tmp_path / "out.gpkg"),
        "--class-map",
        "forest",
        "--scheduler",
        scheduler_address,
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    assert "no field 'CODE'" in capsys.readouterr().err
    _assert_nothing_written(tmp_path)


@pytest.mark.slow
def test_worker_processes_give_the_same_statistics(
    tmp_path: Path, two_dates: tuple[Path, Path]
) -> None:
    # tasks, regions and class maps travel to worker processes by pickling
    local = change_file(
        *two_dates,
        _halves(tmp_path),
        tmp_path / "local.gpkg",
        region_id_field="name",
        class_map=FOREST,
    )
    with started_client(2, processes=True) as client:
        remote = change_file(
            *two_dates,
            _halves(tmp_path),
            tmp_path / "remote.gpkg",
            region_id_field="name",
            class_map=FOREST,
            chunk_size=20,
            client=client,
        )
    assert remote.statistics.classes.equals(local.statistics.classes)
    assert remote.statistics.transitions.equals(local.statistics.transitions)
    assert remote.statistics.regions.equals(local.statistics.regions)
    assert len(remote.deforestation) == len(local.deforestation)
