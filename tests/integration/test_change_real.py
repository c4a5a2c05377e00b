"""Change statistics on the real reference maps in ../shared/data (issue 5)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from pyproj import Geod
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject
from scipy import ndimage

from geoseg.catalog.datadir import data_file
from geoseg.change.classmap import preset_class_map
from geoseg.change.loss import LossRule
from geoseg.change.regions import EmptyRegionWarning, prepare_regions
from geoseg.io.raster import read_info
from tests.geodesic import row_areas_m2
from workflows.change import DateLayers, change_file, change_statistics, class_ids_on_grid

pytestmark = pytest.mark.slow

T1 = "guadeloupe_forest/forest_t1.tif"
T3 = "guadeloupe_forest/forest_t3.tif"
FCC = "guadeloupe_forest/fcc123.tif"
PRODES = "rondonia_prodes/PRODES_LANDSAT_AMZ_2000-08-01_2020-07-31_class_v20220606.tif"
EVERY_PIXEL = LossRule(min_loss_ha=0)  # no minimum mapping unit: the map difference itself
LOSS = "neiba_hansen/Hansen_GFC-2023-v1.11_lossyear_20N_080W.tif"
COVER = "neiba_hansen/Hansen_GFC-2023-v1.11_treecover2000_20N_080W.tif"


def _read(relative: str) -> tuple[np.ndarray, rasterio.Affine, CRS]:
    with rasterio.open(data_file(relative)) as dataset:
        return dataset.read(1), dataset.transform, dataset.crs


def _box_grid(bounds: tuple[float, float, float, float], crs: CRS, path: Path) -> gpd.GeoDataFrame:
    """3 x 3 boxes tiling ``bounds``; their edges cut pixels at 1/3 and 2/3, never at centres."""
    left, bottom, right, top = bounds
    xs, ys = np.linspace(left, right, 4), np.linspace(top, bottom, 4)
    boxes = {
        f"r{row}c{col}": shapely.box(xs[col], ys[row + 1], xs[col + 1], ys[row])
        for row in range(3)
        for col in range(3)
    }
    frame = gpd.GeoDataFrame({"cell": list(boxes)}, geometry=list(boxes.values()), crs=crs)
    frame.to_file(path, driver="GPKG")
    return frame


def _centre_mask(
    box: shapely.Polygon, transform: rasterio.Affine, shape: tuple[int, int]
) -> np.ndarray:
    """Independent pixel-centre rule for an axis-aligned box."""
    left, bottom, right, top = box.bounds
    xs = transform.c + transform.a * (np.arange(shape[1]) + 0.5)
    ys = transform.f + transform.e * (np.arange(shape[0]) + 0.5)
    return ((ys > bottom) & (ys < top))[:, None] & ((xs > left) & (xs < right))[None, :]


@pytest.fixture(scope="module")
def guadeloupe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp_path = tmp_path_factory.mktemp("guadeloupe")
    t1, transform, crs = _read(T1)
    t3, _, _ = _read(T3)
    with rasterio.open(data_file(T1)) as dataset:
        bounds = tuple(dataset.bounds)
    regions = _box_grid(bounds, crs, tmp_path / "cells.gpkg")
    result = change_file(
        data_file(T1),
        data_file(T3),
        tmp_path / "cells.gpkg",
        tmp_path / "change.gpkg",
        region_id_field="cell",
        stats=tmp_path / "stats.parquet",
        class_map=preset_class_map("forest"),
        rule=EVERY_PIXEL,
        chunk_size=1500,
    )
    return {
        "t1": t1,
        "t3": t3,
        "row_m2": row_areas_m2(transform, crs.to_string(), t1.shape[0]),
        "transform": transform,
        "regions": regions,
        "result": result,
        "tmp": tmp_path,
    }


def test_guadeloupe_deforestation_and_iou_per_region(guadeloupe: dict[str, object]) -> None:
    t1, t3 = guadeloupe["t1"], guadeloupe["t3"]
    result = guadeloupe["result"]
    regions = guadeloupe["regions"]
    assert isinstance(t1, np.ndarray) and isinstance(t3, np.ndarray)
    summary = result.statistics.regions.set_index("region_id")  # type: ignore[attr-defined]
    classes = result.statistics.classes.set_index(["region_id", "class_id"])  # type: ignore[attr-defined]
    transitions = result.statistics.transitions.set_index(
        ["region_id", "from_class_id", "to_class_id"]
    )  # type: ignore[attr-defined]
    for cell, box in zip(regions.cell, regions.geometry, strict=True):  # type: ignore[attr-defined]
        inside = _centre_mask(box, guadeloupe["transform"], t1.shape)  # type: ignore[arg-type]
        lost = int((inside & (t1 == 1) & (t3 == 0)).sum())
        assert transitions.pixels.get((cell, 1, 0), 0) == lost
        # 30 m map pixels of World Mercator cover about 830 m2 of ground at 16 N, by row
        lost_m2 = ((inside & (t1 == 1) & (t3 == 0)) * guadeloupe["row_m2"][:, None]).sum()  # type: ignore[index]
        assert summary.loc[cell, "deforestation_ha"] == pytest.approx(lost_m2 / 10_000, rel=1e-6)
        for class_id in (0, 1):
            a, b = inside & (t1 == class_id), inside & (t3 == class_id)
            union = int((a | b).sum())
            expected = (a & b).sum() / union if union else np.nan
            assert classes.loc[(cell, class_id), "iou"] == pytest.approx(
                expected, rel=1e-12, nan_ok=True
            )
    assert summary.valid_pixels.sum() == t1.size


def test_guadeloupe_total_agrees_with_fcc123(guadeloupe: dict[str, object]) -> None:
    # fcc123 classes 1 and 2 (loss t1->t2, t2->t3) are pixel for pixel the t1 forest missing at t3,
    # and the 3 x 3 cells tile the raster (each pixel centre in exactly one cell): the totals agree
    # exactly in pixels, and in hectares up to float rounding of the per-region sums.
    fcc, _, _ = _read(FCC)
    loss_pixels = int(np.isin(fcc, [1, 2]).sum())
    result = guadeloupe["result"]
    transitions = result.statistics.transitions  # type: ignore[attr-defined]
    lost = transitions[(transitions.from_class_id == 1) & (transitions.to_class_id == 0)]
    assert int(lost.pixels.sum()) == loss_pixels == 85570
    total_ha = result.statistics.regions.deforestation_ha.sum()  # type: ignore[attr-defined]
    ground_ha = (np.isin(fcc, [1, 2]) * guadeloupe["row_m2"][:, None]).sum() / 10_000  # type: ignore[index]
    assert total_ha == pytest.approx(ground_ha, rel=1e-6)
    # the map-plane answer (0.09 ha a pixel) would be 8% too large
    assert loss_pixels * 0.09 > 1.08 * total_ha


def test_guadeloupe_outputs(guadeloupe: dict[str, object]) -> None:
    tmp = guadeloupe["tmp"]
    assert isinstance(tmp, Path)
    table = pd.read_parquet(tmp / "stats.parquet")
    assert len(table) == 9 * 2
    polygons = gpd.read_file(tmp / "change.gpkg", layer="deforestation")
    assert polygons.geometry.area.sum() == pytest.approx(85570 * 900, rel=1e-9)
    assert polygons.region_ids.str.len().min() > 0


def _write(path: Path, array: np.ndarray, transform: rasterio.Affine, crs: CRS) -> Path:
    height, width = array.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=height,
        width=width,
        count=1,
        dtype="uint8",
        crs=crs,
        transform=transform,
        nodata=255,
        tiled=True,
    ) as dataset:
        dataset.write(array, 1)
    return path


def _to_utm(
    array: np.ndarray, transform: rasterio.Affine, crs: CRS, resolution: float, path: Path
) -> Path:
    utm = CRS.from_epsg(32620)
    left, top = transform.c, transform.f
    right, bottom = transform @ (array.shape[1], array.shape[0])
    dst_transform, width, height = calculate_default_transform(
        crs, utm, array.shape[1], array.shape[0], left, bottom, right, top, resolution=resolution
    )
    warped = np.full((height, width), 255, np.uint8)
    reproject(
        array,
        warped,
        src_transform=transform,
        src_crs=crs,
        dst_transform=dst_transform,
        dst_crs=utm,
        resampling=Resampling.nearest,
        src_nodata=255,
        dst_nodata=255,
    )
    return _write(path, warped, dst_transform, utm)


def test_guadeloupe_after_on_another_crs(tmp_path: Path, guadeloupe: dict[str, object]) -> None:
    # A 1000 x 1000 crop with much loss; forest_t3 is warped to UTM 20N (nearest) in the test
    # and read back onto forest_t1's EPSG:3395 grid (nearest, per window).
    t1, t3 = guadeloupe["t1"], guadeloupe["t3"]
    transform = guadeloupe["transform"]
    assert isinstance(t1, np.ndarray) and isinstance(t3, np.ndarray)
    assert isinstance(transform, rasterio.Affine)
    rows, cols = slice(1250, 2250), slice(250, 1250)
    crop_transform = transform @ rasterio.Affine.translation(250, 1250)
    crs = CRS.from_epsg(3395)
    before = _write(tmp_path / "t1.tif", t1[rows, cols], crop_transform, crs)
    after = _write(tmp_path / "t3.tif", t3[rows, cols], crop_transform, crs)
    with rasterio.open(before) as dataset:
        _box_grid(tuple(dataset.bounds), crs, tmp_path / "cells.gpkg")
    options = {"region_id_field": "cell", "class_map": preset_class_map("forest")}
    shared = change_file(
        before, after, tmp_path / "cells.gpkg", tmp_path / "a.gpkg", chunk_size=512, **options
    )
    # 15 m UTM pixels: every t1 pixel centre falls in a UTM pixel whose centre lies within
    # 10.6 m of it, inside the same 28.8 m (ground) source pixel, so the round trip is exact.
    fine = _to_utm(t3[rows, cols], crop_transform, crs, 15.0, tmp_path / "t3_utm15.tif")
    exact = change_file(
        before, fine, tmp_path / "cells.gpkg", tmp_path / "b.gpkg", chunk_size=384, **options
    )
    assert exact.grid == shared.grid
    assert exact.statistics.transitions.equals(shared.statistics.transitions)
    assert exact.statistics.regions.equals(shared.statistics.regions)
    # 30 m UTM pixels: two nearest resamplings move pixels by up to one pixel, and up to 13
    # edge pixels per cell fall outside the warped raster (excluded). Class areas per cell keep
    # within 1 % (measured <= 0.5 %) and over all cells within 0.1 % (measured 0.04 %).
    # Deforestation, the difference of two maps, picks up false change along forest edges:
    # +2 % to +15 % per cell (the most in cells with little loss), within 8 % in total.
    coarse = _to_utm(t3[rows, cols], crop_transform, crs, 30.0, tmp_path / "t3_utm30.tif")
    moved = change_file(
        before, coarse, tmp_path / "cells.gpkg", tmp_path / "c.gpkg", chunk_size=512, **options
    )
    ours = moved.statistics.classes.set_index(["region_id", "class_id"]).area_after_ha
    theirs = shared.statistics.classes.set_index(["region_id", "class_id"]).area_after_ha
    assert np.allclose(ours, theirs, rtol=0.01)
    totals = ours.groupby("class_id").sum() / theirs.groupby("class_id").sum()
    assert np.allclose(totals, 1.0, rtol=0.001)
    assert moved.statistics.regions.excluded_pixels.max() <= 20
    lost = moved.statistics.regions.deforestation_ha
    expected = shared.statistics.regions.deforestation_ha
    assert np.allclose(lost, expected, rtol=0.2)
    assert lost.sum() == pytest.approx(expected.sum(), rel=0.08)


BRAZIL_ALBERS = (
    "+proj=aea +lat_0=-12 +lon_0=-54 +lat_1=-2 +lat_2=-22 +ellps=GRS80 +units=m +no_defs"
)


def _prodes_states(tmp_path: Path) -> Path:
    states = pd.concat(
        [
            gpd.read_file(data_file("rondonia_prodes/rondonia.shp")),
            gpd.read_file(data_file("rondonia_prodes/mt.shp")),
        ],
        ignore_index=True,
    )
    path = tmp_path / "states.gpkg"
    states.to_file(path, driver="GPKG")
    return path


def test_prodes_clearing_per_year_per_state(tmp_path: Path) -> None:
    # The PRODES clip lies wholly inside Rondonia: Mato Grosso gets a row of zeros and a warning.
    prodes = data_file(PRODES)
    with pytest.warns(EmptyRegionWarning, match="MATO GROSSO"):
        result = change_file(
            prodes,
            prodes,
            _prodes_states(tmp_path),
            tmp_path / "prodes.gpkg",
            region_id_field="NM_ESTADO",
            class_map=preset_class_map("prodes"),
            chunk_size=256,
        )
    summary = result.statistics.regions.set_index("region_id")
    codes, transform, crs = _read(PRODES)
    assert summary.loc["MATO GROSSO", "valid_pixels"] == 0
    assert summary.loc["RONDÔNIA", "excluded_pixels"] == int((codes == 32).sum())  # clouds
    # independent check: the raster warped (nearest) to an equal-area projection at 10 m;
    # each class's area is its pixel count x 100 m2. Agreement within 0.5 % (measured <= 0.07 %).
    albers = CRS.from_string(BRAZIL_ALBERS)
    height, width = codes.shape
    left, top = transform.c, transform.f
    right, bottom = transform @ (width, height)
    dst_transform, dst_width, dst_height = calculate_default_transform(
        crs, albers, width, height, left, bottom, right, top, resolution=10.0
    )
    warped = np.full((dst_height, dst_width), 255, np.uint8)
    reproject(
        codes,
        warped,
        src_transform=transform,
        src_crs=crs,
        dst_transform=dst_transform,
        dst_crs=albers,
        resampling=Resampling.nearest,
        src_nodata=255,
        dst_nodata=255,
    )
    classes = result.statistics.classes.query("region_id == 'RONDÔNIA'").set_index("class_id")
    for code, year in {11: 2012, 16: 2017, 17: 2018, 27: 2019, 29: 2020, 33: 2021}.items():
        equal_area_ha = (warped == code).sum() * 100.0 / 10_000
        assert classes.loc[code, "class_name"] == f"cleared {year}"
        assert classes.loc[code, "area_before_ha"] == pytest.approx(equal_area_ha, rel=0.005)
        assert classes.loc[code, "iou"] == 1.0  # the same map at both dates
    assert classes.loc[1, "area_before_ha"] == pytest.approx((warped == 1).sum() / 100, rel=0.005)


def test_prodes_statistics_do_not_depend_on_chunk_size(tmp_path: Path) -> None:
    # geographic grid: every row has its own (geodesic) pixel area
    prodes = data_file(PRODES)
    grid = read_info(prodes).grid
    regions = gpd.GeoDataFrame(
        {"name": ["north", "south"]},
        geometry=[shapely.box(-62.7, -8.76, -62.4, -8.6), shapely.box(-62.6, -8.9, -62.55, -8.75)],
        crs="EPSG:4674",
    )
    prepared = prepare_regions(regions, grid, id_field="name", source="boxes")
    prodes_map = preset_class_map("prodes")
    classes = prodes_map.specs()
    first = None
    for size in (97, 256, 700):
        ids = class_ids_on_grid(prodes, grid, prodes_map, size)
        shifted = class_ids_on_grid(prodes, grid, prodes_map, size + 13)  # AFTER chunked otherwise
        stats, _ = change_statistics(
            DateLayers(ids), DateLayers(shifted), grid, prepared, classes, LossRule()
        )
        if first is None:
            first = stats
            continue
        assert stats.classes.equals(first.classes)
        assert stats.transitions.equals(first.transitions)
        assert stats.regions.equals(first.regions)
    assert first is not None and first.regions.valid_pixels.min() > 0


def test_hansen_loss_inside_tree_cover(tmp_path: Path) -> None:
    # BEFORE: tree cover 2000 > 30 % is forest; AFTER: loss year (0 none, 1..23 = 2001..2023).
    loss, transform, _ = _read(LOSS)
    cover, _, _ = _read(COVER)
    with rasterio.open(data_file(LOSS)) as dataset:
        bounds = tuple(dataset.bounds)
    regions = _box_grid(bounds, CRS.from_epsg(4326), tmp_path / "cells.gpkg")
    result = change_file(
        data_file(COVER),
        data_file(LOSS),
        tmp_path / "cells.gpkg",
        tmp_path / "loss.gpkg",
        region_id_field="cell",
        stats=tmp_path / "loss.csv",
        before_class_map=preset_class_map("hansen-treecover30"),
        after_class_map=preset_class_map("hansen-loss"),
        rule=EVERY_PIXEL,
        chunk_size=64,
    )
    # independent geodesic area of each row's pixels (WGS 84)
    geod = Geod(ellps="WGS84")
    edges = transform.f + transform.e * np.arange(loss.shape[0] + 1)
    row_m2 = np.array(
        [
            abs(
                geod.polygon_area_perimeter(
                    [
                        transform.c,
                        transform.c + transform.a,
                        transform.c + transform.a,
                        transform.c,
                    ],
                    [edges[row], edges[row], edges[row + 1], edges[row + 1]],
                )[0]
            )
            for row in range(loss.shape[0])
        ]
    )
    summary = result.statistics.regions.set_index("region_id")
    transitions = result.statistics.transitions.set_index(
        ["region_id", "from_class_id", "to_class_id"]
    )
    for cell, box in zip(regions.cell, regions.geometry, strict=True):
        inside = _centre_mask(box, transform, loss.shape)
        lost = inside & (cover > 30) & (loss >= 1) & (loss <= 23)
        expected_ha = (lost * row_m2[:, None]).sum() / 10_000
        assert summary.loc[cell, "deforestation_ha"] == pytest.approx(expected_ha, rel=1e-6)
        forest_ha = ((inside & (cover > 30)) * row_m2[:, None]).sum() / 10_000
        assert summary.loc[cell, "deforestation_share"] == pytest.approx(
            expected_ha / forest_ha, rel=1e-6
        )
        for year in (2003, 2023):
            pixels = int((lost & (loss == year - 2000)).sum())
            assert transitions.pixels.get((cell, 1, 100 + year - 2000), 0) == pixels
    assert (tmp_path / "loss.transitions.csv").exists()


def test_guadeloupe_minimum_mapping_unit_keeps_whole_patches(
    guadeloupe: dict[str, object], tmp_path: Path
) -> None:
    # independent: 4-connected loss patches (scipy) measured with geodesic row areas
    t1, t3, row_m2 = guadeloupe["t1"], guadeloupe["t3"], guadeloupe["row_m2"]
    lost = (t1 == 1) & (t3 == 0)  # type: ignore[operator]
    labels, count = ndimage.label(lost)
    patch_m2 = ndimage.sum_labels(
        np.broadcast_to(row_m2[:, None], lost.shape), labels, range(1, count + 1)
    )  # type: ignore[index]
    kept = patch_m2 >= 5_000
    result = change_file(
        data_file(T1),
        data_file(T3),
        guadeloupe["tmp"] / "cells.gpkg",  # type: ignore[operator]
        tmp_path / "mmu.gpkg",
        region_id_field="cell",
        class_map=preset_class_map("forest"),
        chunk_size=700,
    )
    regions = result.statistics.regions
    assert regions.loss_ha.sum() == pytest.approx(patch_m2[kept].sum() / 10_000, rel=1e-6)
    assert len(result.deforestation) == int(kept.sum())
    assert result.deforestation.area_ha.min() >= 0.5
    # the map difference counts every lost pixel; the minimum mapping unit drops the specks
    assert regions.loss_ha.sum() < 0.5 * (lost * row_m2[:, None]).sum() / 10_000  # type: ignore[index]
    assert (regions.deforestation_ha == regions.loss_ha).all()
