from __future__ import annotations

import pickle
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from geoseg.bbox import BBox, BBoxClippedWarning, make_bbox, to_crs
from geoseg.catalog.mosaic import coarser_grid, mosaic_source, target_grid
from geoseg.catalog.stac import AssetFile, BandInfo, CatalogError, SceneEntry, open_catalog
from geoseg.errors import BBoxError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.predict.sources import RasterSource

from ..conftest import coordinate_image

UTM = CRS.from_epsg(32612)
NODATA = 65535
BANDS = ("blue", "green", "red", "nir")


def scene_entry(
    identifier: str, path: Path, grid: RasterGrid, *, scale: float = 1.0, offset: float = 0.0
) -> SceneEntry:
    from rasterio.warp import transform_bounds

    west, south, east, north = transform_bounds(grid.crs, "EPSG:4326", *grid.bounds)
    moment = datetime(2015, 8, 18, tzinfo=UTC)
    return SceneEntry(
        id=identifier,
        collection="landsat",
        start=moment,
        end=moment,
        footprint=BBox(west, south, east, north, CRS.from_epsg(4326)),
        grid=grid,
        bands=tuple(
            BandInfo(index, name, name, scale, offset, NODATA, "DN")
            for index, name in enumerate(BANDS, start=1)
        ),
        data=AssetFile(str(path), "0" * 64),
    )


@pytest.fixture
def two_scenes(
    make_geotiff: Callable[..., Path],
) -> tuple[list[tuple[SceneEntry, str]], np.ndarray, np.ndarray]:
    """Scene A (40x50) with a nodata hole; scene B (60x60) covering A and more."""
    first = coordinate_image(4, 40, 50)
    first[:, 10:20, 10:20] = NODATA
    second = coordinate_image(4, 60, 60) + 1000
    first_transform = Affine(30, 0, 300000, 0, -30, 4150000)
    second_transform = Affine(30, 0, 300000 - 300, 0, -30, 4150000 + 300)
    path_a = make_geotiff(first, "a.tif", transform=first_transform, nodata=NODATA)
    path_b = make_geotiff(second, "b.tif", transform=second_transform, nodata=NODATA)
    entry_a = scene_entry("a", path_a, RasterGrid(UTM, first_transform, 40, 50), scale=2.0)
    entry_b = scene_entry("b", path_b, RasterGrid(UTM, second_transform, 60, 60), offset=-1.0)
    return [(entry_a, str(path_a)), (entry_b, str(path_b))], first, second


def test_first_valid_mosaic_with_catalog_scaling(two_scenes) -> None:  # type: ignore[no-untyped-def]
    scenes, first, second = two_scenes
    grid = RasterGrid(UTM, Affine(30, 0, 300000 - 300, 0, -30, 4150000 + 300), 60, 60)
    source = mosaic_source(grid, scenes, ["nir", "blue"])
    assert isinstance(source, RasterSource)
    values, valid = source.read(grid.full_window)
    assert valid.all()
    expected = second[[3, 0]].astype(np.float32) - 1.0
    inner = expected[:, 10:50, 10:60].copy()
    from_a = first[[3, 0]].astype(np.float32) * 2.0
    hole = np.zeros((40, 50), dtype=bool)
    hole[10:20, 10:20] = True
    inner[:, ~hole] = from_a[:, ~hole]
    expected[:, 10:50, 10:60] = inner
    np.testing.assert_array_equal(values, expected)


def test_reads_do_not_depend_on_the_window(two_scenes) -> None:  # type: ignore[no-untyped-def]
    scenes, _, _ = two_scenes
    # a lon/lat grid: every read goes through GDAL warping
    grid = RasterGrid(CRS.from_epsg(4326), Affine(0.0002, 0, -113.268, 0, -0.0002, 37.48), 100, 120)
    source = mosaic_source(grid, scenes, list(BANDS))
    whole, whole_valid = source.read(grid.full_window)
    assert 0.3 < whole_valid.mean() < 1.0
    for window in (PixelWindow(3, 5, 17, 11), PixelWindow(-4, -4, 20, 30)):
        part, part_valid = source.read(window)
        inside = window.clip(grid.height, grid.width)
        rows, cols = inside.shift(-window.row, -window.col).slices()
        np.testing.assert_array_equal(
            part[:, rows, cols], whole[:, inside.slices()[0], inside.slices()[1]]
        )
        np.testing.assert_array_equal(part_valid[rows, cols], whole_valid[inside.slices()])
    assert not source.read(PixelWindow(-10, -10, 5, 5))[1].any()
    restored = pickle.loads(pickle.dumps(source))
    assert restored.identity == source.identity


def test_same_area_in_lonlat_or_utm_gives_the_same_grid() -> None:
    zion = [entry for entry in open_catalog().collection("landsat") if entry.id.startswith("zion")]
    lonlat = make_bbox((-113.10, 37.15, -112.95, 37.30))
    utm = to_crs(lonlat, "EPSG:32612")
    first = target_grid(lonlat, zion)
    second = target_grid(make_bbox(utm.bounds, "EPSG:32612"), zion)
    assert first == second
    scene = zion[0].grid
    assert scene is not None
    # pixel edges fall on the scene's pixel edges
    assert (first.transform.c - scene.transform.c) % 30 == 0
    assert (first.transform.f - scene.transform.f) % 30 == 0
    assert first.crs == scene.crs and first.resolution == (30.0, 30.0)


def test_grid_clipped_with_warning_or_rejected_outside() -> None:
    zion = [entry for entry in open_catalog().collection("landsat") if entry.id.startswith("zion")]
    scene = zion[0].grid
    assert scene is not None
    with pytest.warns(BBoxClippedWarning, match="clipped"):
        grid = target_grid(make_bbox((330000, 4150000, 340000, 4160000), "EPSG:32612"), zion)
    assert grid.bounds == (329985, 4149975, scene.bounds[2], scene.bounds[3])
    with pytest.raises(BBoxError, match="outside"):
        target_grid(make_bbox((400000, 4150000, 410000, 4160000), "EPSG:32612"), zion)


def test_missing_band_is_reported(two_scenes) -> None:  # type: ignore[no-untyped-def]
    scenes, _, _ = two_scenes
    grid = RasterGrid(UTM, Affine(30, 0, 300000, 0, -30, 4150000), 10, 10)
    with pytest.raises(CatalogError, match="has no band swir16"):
        mosaic_source(grid, scenes, ["red", "swir16"])


def test_coarser_grid_keeps_the_extent() -> None:
    grid = RasterGrid(UTM, Affine(30, 0, 0, 0, -30, 0), 1000, 700)
    coarse = coarser_grid(grid, 300)
    assert coarse.resolution == (120.0, 120.0)
    assert coarse.shape == (250, 175)
    assert coarse.bounds[0] == grid.bounds[0] and coarse.bounds[3] == grid.bounds[3]
