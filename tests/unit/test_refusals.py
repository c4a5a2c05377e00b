"""Refusing what cannot be right, in the library (issue 21, items 1-3 and 9-11).

The command-line view of the same refusals (exit code, one line, nothing
written) is ``tests/integration/test_refusals.py``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning

from geoseg.areas import pixel_size_m
from geoseg.bbox import make_bbox, parse_crs
from geoseg.catalog.stac import local_path
from geoseg.errors import BBoxError, CatalogError, InputError, RasterReadError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.io.raster import open_raster, read_info, read_window_masked
from geoseg.limits import MAX_PIXELS, check_pixel_budget
from geoseg.predict.pixel_size import (
    REFUSE_RATIO,
    WARN_RATIO,
    PixelSizeWarning,
    check_pixel_size,
    judge_pixel_size,
)
from geoseg.predict.settings import InferenceSettings
from geoseg.predict.sources import FileSource
from tests.conftest import ORIGIN, UTM_CRS, write_geotiff

VRT_READING_A_SYSTEM_FILE = """<VRTDataset rasterXSize="16" rasterYSize="4">
  <SRS>EPSG:32612</SRS>
  <GeoTransform>300000, 30, 0, 4150000, 0, -30</GeoTransform>
  <VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">
    <SourceFilename relativetoVRT="0">{target}</SourceFilename>
    <ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>16</LineOffset>
  </VRTRasterBand>
</VRTDataset>
"""


def disguised_vrt(path: Path, target: Path) -> Path:
    """A ``.tif`` that is a VRT feeding the bytes of ``target`` as pixels."""
    path.write_text(VRT_READING_A_SYSTEM_FILE.format(target=target))
    return path


def sparse_geotiff(
    path: Path,
    height: int,
    width: int,
    *,
    bands: int = 4,
    block: int = 256,
    held: tuple[tuple[int, int], ...] = (),
) -> Path:
    """A tiled ``SPARSE_OK`` GeoTIFF without nodata holding only the blocks ``held``.

    ``held`` lists ``(block_row, block_col)``; their pixels are 1000 + band.
    """
    profile = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": bands,
        "dtype": "uint16",
        "crs": UTM_CRS,
        "transform": Affine(30.0, 0.0, ORIGIN[0], 0.0, -30.0, ORIGIN[1]),
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "sparse_ok": True,
        "BIGTIFF": "YES",
    }
    with rasterio.open(path, "w", **profile) as dataset:
        values = (1000 + np.arange(1, bands + 1, dtype=np.uint16))[:, None, None]
        for row, col in held:
            window = ((row * block, (row + 1) * block), (col * block, (col + 1) * block))
            dataset.write(np.broadcast_to(values, (bands, block, block)), window=window)
    return path


# --- 1. header bombs ---------------------------------------------------------------------------


def test_a_header_bomb_is_refused_with_its_declared_size(tmp_path: Path) -> None:
    bomb = sparse_geotiff(tmp_path / "bomb.tif", 10**6, 10**6, block=8192)
    assert bomb.stat().st_size < 2 * 2**20
    with pytest.raises(InputError, match=r"bomb\.tif: declares 1000000 x 1000000 px x 4 bands"):
        read_info(bomb)
    with pytest.raises(InputError, match="raise --max-pixels"):
        FileSource.open(bomb)


def test_the_budget_is_one_setting_with_one_default(tmp_path: Path) -> None:
    assert InferenceSettings().max_pixels == MAX_PIXELS == 2_500_000_000
    check_pixel_budget("x", 50_000, 50_000, 4)  # exactly the budget passes
    with pytest.raises(InputError, match=r"x: declares 50000 x 50001 px x 4 bands"):
        check_pixel_budget("x", 50_000, 50_001, 4)
    small = write_geotiff(tmp_path / "small.tif", np.ones((1, 100, 100), dtype=np.uint8))
    assert read_info(small, max_pixels=10_000).grid.height == 100
    with pytest.raises(InputError, match=r"100 x 100 px x 1 bands \(1e\+04 px\)"):
        read_info(small, max_pixels=9_999)


def test_blocks_a_sparse_file_does_not_hold_are_invalid_and_not_read(tmp_path: Path) -> None:
    path = sparse_geotiff(tmp_path / "sparse.tif", 1024, 1024, held=((1, 2),))
    values, valid = read_window_masked(path, PixelWindow(128, 384, 512, 512))
    expected = np.zeros((512, 512), dtype=bool)
    expected[128:384, 128:384] = True  # block (1, 2) is rows 256-512, cols 512-768
    np.testing.assert_array_equal(valid, expected)
    assert np.all(values[:, valid] == (1000 + np.arange(1, 5))[:, None])
    # a window of absent blocks only: all invalid (and never decoded)
    _, nothing = read_window_masked(path, PixelWindow(600, 0, 300, 300))
    assert not nothing.any()
    # FileSource (what the engine reads) sees the same mask
    source = FileSource.open(path)
    _, through_source = source.read(PixelWindow(128, 384, 512, 512))
    np.testing.assert_array_equal(through_source, expected)


def test_a_dense_file_is_unaffected_by_the_sparse_check(tmp_path: Path) -> None:
    data = np.arange(4 * 200 * 200, dtype=np.uint16).reshape(4, 200, 200)
    path = write_geotiff(tmp_path / "dense.tif", data)
    values, valid = read_window_masked(path, PixelWindow(-10, 50, 100, 200))
    assert valid[10:, :150].all() and not valid[:10].any() and not valid[:, 150:].any()
    np.testing.assert_array_equal(values[:, 10:, :150], data[:, :90, 50:200])


# --- 2. pixel size against the model card --------------------------------------------------------


@pytest.mark.parametrize(
    ("scene_m", "verdict"),
    [
        (30.0, "ok"),
        (36.0, "ok"),
        (20.0, "warning"),
        (45.0, "warning"),
        (10.0, "refused"),
        (60.0, "refused"),
        (300.0, "refused"),
    ],
)
def test_pixel_size_verdicts(scene_m: float, verdict: str) -> None:
    assert WARN_RATIO == 1.25 and REFUSE_RATIO == 2.0
    assert judge_pixel_size(scene_m, 30.0, allow_mismatch=False).verdict == verdict
    overridden = judge_pixel_size(scene_m, 30.0, allow_mismatch=True)
    assert overridden.verdict == ("overridden" if verdict == "refused" else verdict)


def _utm_grid(size: float) -> RasterGrid:
    return RasterGrid(CRS.from_string(UTM_CRS), Affine(size, 0, 400000, 0, -size, 4150000), 50, 50)


def test_a_300_m_scene_is_refused_for_a_30_m_model_with_the_way_out() -> None:
    with pytest.raises(InputError) as error:
        check_pixel_size("coarse.tif", _utm_grid(300.0), 30.0, allow_mismatch=False)
    message = str(error.value)
    assert message.startswith("coarse.tif: pixels of 300")
    assert "10.00x" in message
    assert "gdalwarp -tr 30 30" in message and "--allow-pixel-size-mismatch" in message
    with pytest.warns(PixelSizeWarning, match="coarse.tif: pixels of 300"):
        check = check_pixel_size("coarse.tif", _utm_grid(300.0), 30.0, allow_mismatch=True)
    assert check.record() == {
        "scene_pixel_size_m": pytest.approx(300.0, rel=2e-3),
        "model_pixel_size_m": 30.0,
        "pixel_size_ratio": pytest.approx(10.0, rel=2e-3),
        "pixel_size_check": "overridden",
    }


def test_sentinel2_10_m_for_a_30_m_model_is_refused() -> None:
    with pytest.raises(InputError, match=r"3\.00x"):
        check_pixel_size("s2.tif", _utm_grid(10.0), 30.0, allow_mismatch=False)


def test_a_mismatch_below_refusal_warns() -> None:
    with pytest.warns(PixelSizeWarning, match=r"w\.tif: pixels of 45.* expects 30 m \(1\.50x"):
        check = check_pixel_size("w.tif", _utm_grid(45.0), 30.0, allow_mismatch=False)
    assert check.verdict == "warning"


def test_pixel_size_is_measured_on_the_ground_in_geographic_and_web_mercator_grids() -> None:
    # 1 arc-second at 60 deg N: 30.9 m north-south, 15.5 m east-west -> 21.9 m square
    lonlat = RasterGrid(CRS.from_epsg(4326), Affine(1 / 3600, 0, 10, 0, -1 / 3600, 60.5), 64, 64)
    geod = pyproj.Geod(ellps="WGS84")
    _, _, north_south = geod.inv(10, 60.5 - 32 / 3600, 10, 60.5 - 33 / 3600)
    _, _, east_west = geod.inv(10, 60.5 - 32.5 / 3600, 10 + 1 / 3600, 60.5 - 32.5 / 3600)
    assert pixel_size_m(lonlat) == pytest.approx(np.sqrt(north_south * east_west), rel=1e-3)
    assert judge_pixel_size(pixel_size_m(lonlat), 30.0, allow_mismatch=False).verdict == "warning"
    # 25 map metres of Web Mercator at 60 deg N cover 12.5 m on the ground: refused for 30 m
    mercator = pyproj.Transformer.from_crs(4326, 3857, always_xy=True)
    x, y = mercator.transform(10, 60)
    web = RasterGrid(CRS.from_epsg(3857), Affine(25, 0, x, 0, -25, y), 64, 64)
    assert pixel_size_m(web) == pytest.approx(12.5, rel=0.01)
    with pytest.raises(InputError, match=r"web\.tif: pixels of 12\.5.* \(2\.4\dx"):
        check_pixel_size("web.tif", web, 30.0, allow_mismatch=False)


# --- 3. missing geotransform ---------------------------------------------------------------------


def test_a_raster_with_a_crs_and_no_geotransform_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nogt.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8", crs=UTM_CRS
        ) as dataset:
            dataset.write(np.ones((1, 8, 8), dtype=np.uint8))
    with pytest.raises(InputError, match=r"nogt\.tif: the raster has a CRS but no geotransform"):
        read_info(path)


# --- 9. CRS input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "EPSG:32612",
        "epsg:32612",
        "32612",
        "urn:ogc:def:crs:EPSG::32612",
        pyproj.CRS.from_epsg(32612).to_wkt(),
        pyproj.CRS.from_epsg(32612).to_wkt(version="WKT1_GDAL"),
        pyproj.CRS.from_epsg(32612).to_json(),
    ],
)
def test_epsg_codes_wkt_and_projjson_are_accepted(text: str) -> None:
    assert parse_crs(text).to_epsg() == 32612


@pytest.mark.parametrize(
    "text",
    [
        "http://127.0.0.1:9/epsg/4326.wkt",
        "https://epsg.io/4326.wkt",
        "ftp://example.org/crs",
        "/vsicurl/http://127.0.0.1:9/crs.wkt",
        "/etc/passwd",
        "./crs.prj",
        "../crs.prj",
        "~/crs.prj",
    ],
)
def test_urls_and_paths_are_refused_before_any_library_sees_them(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NoLibrary:
        """Stands in for rasterio's CRS: any parse is a failure of the test."""

        @classmethod
        def from_user_input(cls, *args: object) -> None:
            raise AssertionError(f"a CRS parser was called for {text!r}")

        from_wkt = from_epsg = from_proj4 = from_string = from_user_input

    monkeypatch.setattr("geoseg.bbox.CRS", NoLibrary)
    with pytest.raises(BBoxError, match="URL or file path; geoseg does not fetch or read"):
        parse_crs(text)
    monkeypatch.undo()
    with pytest.raises(BBoxError, match="URL or file path"):
        make_bbox((0, 0, 1, 1), text)


def test_a_file_name_without_a_slash_is_not_read(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "utm.prj").write_text(pyproj.CRS.from_epsg(32612).to_wkt())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BBoxError, match=r"unknown CRS 'utm\.prj'"):
        parse_crs("utm.prj")


# --- 10. catalog hrefs ---------------------------------------------------------------------------


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data"
    (root / "scenes").mkdir(parents=True)
    monkeypatch.setenv("GEOSEG_DATA_DIR", str(root))
    return root


def test_hrefs_inside_the_data_directory_resolve(data_root: Path) -> None:
    assert local_path("scenes/a.tif") == data_root / "scenes" / "a.tif"
    assert local_path("scenes/../scenes/a.tif") == data_root / "scenes/../scenes/a.tif"


@pytest.mark.parametrize("href", ["../outside.tif", "scenes/../../outside.tif", "/etc/hostname"])
def test_hrefs_leaving_the_data_directory_are_refused(data_root: Path, href: str) -> None:
    with pytest.raises(CatalogError, match=r"outside the data directory .*--allow-external-hrefs"):
        local_path(href)
    assert local_path(href, allow_external_hrefs=True).name in ("outside.tif", "hostname")


@pytest.mark.parametrize(
    "href", ["http://127.0.0.1:9/a.tif", "/vsicurl/http://127.0.0.1:9/a.tif", "s3://b/a.tif"]
)
def test_remote_hrefs_of_a_static_catalog_are_always_refused(data_root: Path, href: str) -> None:
    for allow in (False, True):
        with pytest.raises(CatalogError, match="remote href in a static catalog"):
            local_path(href, allow_external_hrefs=allow)


# --- 11. input drivers ---------------------------------------------------------------------------


def test_a_disguised_vrt_is_refused_and_reads_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(bytes(range(64)))
    vrt = disguised_vrt(tmp_path / "scene.tif", secret)
    with pytest.raises(InputError, match=r"scene\.tif: the file is a GDAL VRT.*--allow-vrt"):
        read_info(vrt)
    with pytest.raises(InputError, match="GDAL VRT"):
        read_window_masked(vrt, PixelWindow(0, 0, 4, 16))
    with pytest.raises(InputError, match="GDAL VRT"):
        FileSource.open(vrt)
    # only with the explicit option
    source = FileSource.open(vrt, allow_vrt=True)
    values, _ = source.read(PixelWindow(0, 0, 4, 16))
    assert values.reshape(-1).tolist() == list(range(64))


def test_other_formats_are_not_opened(tmp_path: Path) -> None:
    path = tmp_path / "image.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            tmp_path / "image.png", "w", driver="PNG", width=4, height=4, count=1, dtype="uint8"
        ) as dataset:
            dataset.write(np.ones((1, 4, 4), dtype=np.uint8))
    (tmp_path / "image.png").rename(path)
    with pytest.raises(
        RasterReadError, match=r"image\.tif: not a readable raster.*GeoTIFF and COG"
    ):
        open_raster(path)


def test_geotiff_and_cog_open(tmp_path: Path) -> None:
    data = np.ones((1, 64, 64), dtype=np.uint8)
    tiff = write_geotiff(tmp_path / "plain.tif", data)
    cog = tmp_path / "cog.tif"
    with rasterio.open(tiff) as source:
        profile = source.profile | {"driver": "COG"}
        profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled")
        with rasterio.open(cog, "w", **profile) as dataset:
            dataset.write(data)
    for path in (tiff, cog):
        with open_raster(path) as dataset:
            assert dataset.driver == "GTiff"
    assert json.loads(json.dumps(read_info(cog).tags)) is not None
