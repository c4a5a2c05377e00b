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
from pystac.extensions.classification import ClassificationExtension
from pystac.extensions.projection import ProjectionExtension

from geoseg.areas import pixel_areas_m2
from geoseg.change.classmap import preset_class_map
from geoseg.change.regions import EmptyRegionWarning
from geoseg.cli import main
from geoseg.errors import GridMismatchError, InputError, VectorReadError
from geoseg.grid import RasterGrid
from tests.clusters import started_client, started_cluster
from tests.unit.test_stac_outputs import read_item
from workflows.change import change_file

ORIGIN_X, ORIGIN_Y = 300000.0, 4150000.0
HEIGHT, WIDTH = 48, 64
FOREST = preset_class_map("forest")
TRANSFORM = Affine(30.0, 0.0, ORIGIN_X, 0.0, -30.0, ORIGIN_Y)


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
    with pytest.warns(EmptyRegionWarning, match=r"1 regions .*: outside; their"):
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
    item = read_item(tmp_path / "cli.gpkg.stac.json")  # the STAC Item of the outputs
    assert set(item.assets) == {
        "change",
        "cli_parquet",
        "cli_transitions_parquet",
        "cli_regions_parquet",
    }
    assert item.assets["change"].media_type == "application/geopackage+sqlite3"
    assert item.assets["cli_parquet"].media_type == "application/vnd.apache.parquet"
    assert ProjectionExtension.ext(item).shape == [local.grid.height, local.grid.width]
    classes = ClassificationExtension.ext(item).classes
    assert classes is not None
    assert [(c.value, c.title) for c in classes] == [(s.id, s.name) for s in local.classes]


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
    assert exit_info.value.code == 2  # bad input
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


def _forest_scene(
    make_geotiff: Callable[..., Path],
    name: str,
    cleared: list[tuple[slice, slice]],
) -> Path:
    labels = np.ones((HEIGHT, WIDTH), np.uint8)
    for rows, cols in cleared:
        labels[rows, cols] = 0
    return make_geotiff(labels, name=name, nodata=255)


def _probabilities(make_geotiff: Callable[..., Path], name: str, forest: np.ndarray) -> Path:
    bands = np.stack([255 - forest, forest]).astype(np.uint8)  # non-forest, forest
    path = make_geotiff(bands, name=name)
    with rasterio.open(path, "r+") as dataset:
        dataset.descriptions = ("non-forest", "forest")
    return path


def test_confident_loss_minimum_unit_masks_and_confirmation(
    make_geotiff: Callable[..., Path], tmp_path: Path
) -> None:
    # BEFORE all forest; AFTER clears a 10 x 20 block (18 ha of 30 m pixels), a 2 x 2 speck
    # (0.36 ha) and a 6 x 6 block (3.24 ha) that the model calls with low confidence
    big, speck, doubtful = np.s_[5:15, 5:25], np.s_[30:32, 40:42], np.s_[30:36, 5:11]
    before = _forest_scene(make_geotiff, "before.tif", [])
    after = _forest_scene(make_geotiff, "after.tif", [big, speck, doubtful])
    forest_p = np.full((HEIGHT, WIDTH), 240)
    forest_p[doubtful] = 120  # non-forest with probability 0.53 only
    forest_p[big] = 10
    forest_p[speck] = 10
    before_p = _probabilities(make_geotiff, "before_p.tif", np.full((HEIGHT, WIDTH), 250))
    after_p = _probabilities(make_geotiff, "after_p.tif", forest_p)
    # a later date sees the western quarter of the big block as forest again
    regrown = np.ones((HEIGHT, WIDTH), np.uint8)
    regrown[5:15, 10:25] = 0
    later = make_geotiff(regrown, name="later.tif", nodata=255)
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[40:48, :] = 1  # a user's cloud mask over the last 8 rows
    mask_path = make_geotiff(mask, name="mask.tif")
    for name in ("before.tif", "after.tif", "later.tif"):
        with rasterio.open(tmp_path / name, "r+") as dataset:
            dataset.update_tags(GEOSEG_CLASS_NAMES='{"0": "non-forest", "1": "forest"}')
    result = change_file(
        before,
        after,
        _halves(tmp_path),
        tmp_path / "change.gpkg",
        region_id_field="name",
        before_probabilities=before_p,
        after_probabilities=after_p,
        masks=[mask_path],
        later=[later],
        chunk_size=16,
    )
    pixel_ha = (
        pixel_areas_m2(RasterGrid(rasterio.crs.CRS.from_epsg(32612), TRANSFORM, HEIGHT, WIDTH))
        / 10_000
    )
    regions = result.statistics.regions.set_index("region_id")
    everything = regions.loc["all"]
    # only the confident block is loss: the speck is below 0.5 ha, the doubtful block unsure
    assert everything.loss_ha == pytest.approx(pixel_ha[big].sum(), rel=1e-6)
    assert everything.gain_ha == 0.0
    assert everything.net_change_ha == pytest.approx(-everything.loss_ha)
    assert everything.loss_confirmed_ha == pytest.approx(pixel_ha[5:15, 10:25].sum(), rel=1e-6)
    assert everything.loss_unconfirmed_ha == pytest.approx(pixel_ha[5:15, 5:10].sum(), rel=1e-6)
    assert everything.masked_after_ha == pytest.approx(pixel_ha[40:48, :].sum(), rel=1e-6)
    assert everything.masked_after_share == pytest.approx(8 / HEIGHT)
    assert everything.mean_confidence_before == pytest.approx(250 / 255)
    assert len(result.deforestation) == 1
    assert result.deforestation.status.tolist() == ["confirmed"]
    assert result.deforestation.confirmed_share.iloc[0] == pytest.approx(0.75, abs=0.01)
    # the same with any chunking
    again = change_file(
        before,
        after,
        _halves(tmp_path),
        tmp_path / "again.gpkg",
        region_id_field="name",
        before_probabilities=before_p,
        after_probabilities=after_p,
        masks=[mask_path],
        later=[later],
        chunk_size=23,
    )
    pd.testing.assert_frame_equal(result.statistics.regions, again.statistics.regions)


def test_run_flags_reach_the_flags_and_the_change_grid(
    tmp_path: Path, two_dates: tuple[Path, Path]
) -> None:
    from geoseg.change.flags import Flag
    from workflows.staging import RunStaging, domain_warnings

    run = RunStaging(tmp_path, {"started": "2020-01-01T00:00:00Z"}, {})
    run.state["before_domain"] = [
        {"code": "pixel_size", "band": None, "message": "the scene's pixel size 10 m is 3 times"}
    ]
    run.state["after_domain"] = []
    flags = domain_warnings(run)
    assert flags == [
        Flag("out_of_range", "run", "before scene: the scene's pixel size 10 m is 3 times")
    ]
    before, after = two_dates
    out = tmp_path / "change.gpkg"
    result = change_file(
        before,
        after,
        _halves(tmp_path),
        out,
        region_id_field="name",
        class_map=FOREST,
        run_flags=flags,
    )
    assert flags[0] in result.flags
    grid = gpd.read_file(out, layer="change_grid")
    assert "run: before scene: the scene's pixel size 10 m" in grid["flags"].iloc[0]
