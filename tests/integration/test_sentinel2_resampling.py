"""A 10 m Sentinel-2 site through ``geoseg predict`` and ``geoseg run`` with a resampling card.

The model is the shipped forest model (``forest``), whose card says
``resampling: card_pixel_size``: its bands are found by common name (``nir`` is
B8, not B8A ``nir08``), the 10 m scene is read as 3 x 3 block means at 30 m,
and the outputs say so. Site: ``sites/rsgislib_aberystwyth_sentinel2_20210527``
(930 x 947 px at 10 m, ten bands ``B2 blue`` ... ``B8 nir``, ``B8A nir08`` ...,
surface reflectance x 1000, nodata 0; labels: forest, grass, urban and water
polygons).
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.features import rasterize
from shapely.geometry import box

from data_catalog.build import Band, RasterEntry, raster_item
from geoseg.bbox import make_bbox
from geoseg.catalog.datadir import data_file
from geoseg.catalog.mosaic import target_grid
from geoseg.catalog.stac import search
from geoseg.cli import cli
from geoseg.io.checkpoint import read_card
from geoseg.models.loading import resolve_model_dir
from geoseg.predict.resampling import BLOCK_MEAN, RESAMPLING_TAG
from geoseg.predict.settings import InferenceSettings
from geoseg.predict.sources import FileSource
from tests.catalogs import save_scene_catalog
from tests.clusters import started_client
from workflows.run_bbox import run_bbox
from workflows.run_change import run_change

pytestmark = [pytest.mark.slow]

SITE = "sites/rsgislib_aberystwyth_sentinel2_20210527"
NOTICE = "10 m pixels averaged in 3x3 blocks (block mean of valid pixels)"


@pytest.fixture(scope="module")
def image(shared_data: Path) -> Path:
    return data_file(f"{SITE}/image.tif")


@pytest.fixture(scope="module")
def resampling_forest() -> Path:
    """The shipped forest model, whose card reads finer scenes at its 30 m pixel size."""
    shipped = resolve_model_dir("forest")
    assert read_card(shipped).resampling == "card_pixel_size"
    return shipped


def predict(arguments: list[str]) -> tuple[str, np.ndarray, dict[str, str], rasterio.Affine]:
    result = CliRunner().invoke(cli, ["predict", *arguments, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = Path(arguments[arguments.index("--out") + 1])
    with rasterio.open(out) as dataset:
        return result.stderr, dataset.read(1), dataset.tags(), dataset.transform


def test_predict_picks_bands_by_name_and_reads_at_30_m(
    image: Path, resampling_forest: Path, tmp_path: Path
) -> None:
    source = FileSource.open(image)
    assert source.band_names[6:8] == ["nir", "nir08"]  # B8 nir, B8A nir08
    common = [str(image), "--model", str(resampling_forest)]
    stderr, labels, tags, transform = predict([*common, "--out", str(tmp_path / "auto.tif")])
    assert NOTICE in stderr and "read at 30 m" in stderr
    warnings = [line for line in stderr.splitlines() if line.startswith("geoseg: warning: ")]
    assert not any("pixel" in line for line in warnings)  # read at 30 m: no pixel-size warning
    assert labels.shape == (316, 310)  # 947 x 930 px at 10 m, the last blocks partial
    assert transform.a == pytest.approx(30.0) and transform.e == pytest.approx(-30.0)
    with rasterio.open(image) as dataset:
        assert (transform.c, transform.f) == (dataset.transform.c, dataset.transform.f)
    record = json.loads(tags[RESAMPLING_TAG])
    assert record["factor"] == 3 and record["method"] == BLOCK_MEAN
    assert record["source_pixel_size_m"] == pytest.approx(10, abs=0.01)
    assert record["output_pixel_size_m"] == pytest.approx(30, abs=0.01)
    # labels: both classes, no nodata (the site has none), forest where the forest polygons are
    assert set(np.unique(labels)) == {0, 1}
    polygons = gpd.read_file(image.parent / "labels.gpkg")
    share = {}
    for name, group in polygons.groupby("class"):
        inside = rasterize(group.geometry, out_shape=labels.shape, transform=transform) == 1
        share[name] = float((labels[inside] == 1).mean())
    assert share["forest"] > max(share["water"], share["urban"])
    # nir by name is band 7 (B8): the same labels as naming it; B8A (band 8) gives others
    by_b8 = predict(
        [*common, "--bands", "blue=1,green=2,red=3,nir=7", "--out", str(tmp_path / "b8.tif")]
    )[1]
    by_b8a = predict(
        [*common, "--bands", "blue=1,green=2,red=3,nir=8", "--out", str(tmp_path / "b8a.tif")]
    )[1]
    assert np.array_equal(labels, by_b8)
    assert not np.array_equal(labels, by_b8a)


SENTINEL2_BANDS = [
    Band(name, common, 0.001, 0.0, "reflectance", f"{name} surface reflectance x 1000")
    for name, common in (
        ("B2", "blue"),
        ("B3", "green"),
        ("B4", "red"),
        ("B5", "rededge1"),
        ("B6", "rededge2"),
        ("B7", "rededge3"),
        ("B8", "nir"),
        ("B8A", "nir08"),
        ("B11", "swir16"),
        ("B12", "swir22"),
    )
]


@pytest.fixture(scope="module")
def sentinel2_catalog(image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A static catalog of the site's scene, built with the embedded catalog's item builder."""
    entry = RasterEntry(
        id="aberystwyth-s2-20210527",
        collection="landsat",  # the scene collection geoseg run searches (whatever the sensor)
        href=f"{SITE}/image.tif",
        title="Sentinel-2 MSI surface reflectance, Aberystwyth",
        bands=SENTINEL2_BANDS,
        datetime="2021-05-27T11:00:00Z",
    )
    return save_scene_catalog([raster_item(entry)], tmp_path_factory.mktemp("catalog"), "sentinel2")


@pytest.mark.filterwarnings("ignore:scene aberystwyth-s2-20210527 has no quality band")
def test_run_over_a_sentinel2_catalog_writes_30_m_and_records_it(
    sentinel2_catalog: Path, resampling_forest: Path, tmp_path: Path
) -> None:
    bbox = make_bbox((258000.0, 277000.0, 264000.0, 283000.0), "EPSG:27700")
    lines: list[str] = []
    with started_client(1, threads_per_worker=2) as client:
        outputs = run_bbox(
            bbox,
            "2021-05-27",
            out=tmp_path / "run.gpkg",
            model=resampling_forest,
            catalog=sentinel2_catalog,
            settings=InferenceSettings(device="cpu"),
            progress=False,
            client=client,
            report=lines.append,
        )
    assert any(NOTICE in line for line in lines)
    assert outputs.grid.transform.a == pytest.approx(30.0)
    scenes = search(bbox, "2021-05-27", location=sentinel2_catalog)
    fine = target_grid(bbox, scenes)  # the scenes' 10 m grid over the bbox
    assert fine.resolution == pytest.approx((10.0, 10.0))
    assert outputs.grid == fine.zoom_out(3)
    manifest = json.loads(outputs.manifest.read_text())
    resampling = manifest["parameters"]["resampling"]
    assert (resampling["factor"], resampling["method"]) == (3, BLOCK_MEAN)
    assert manifest["parameters"]["pixel_size_check"] == "ok"
    assert manifest["model"]["name"] == "forest"
    with rasterio.open(outputs.labels[0]) as dataset:
        assert dataset.res == pytest.approx((30.0, 30.0))
        labels = dataset.read(1)
        assert json.loads(dataset.tags()[RESAMPLING_TAG])["factor"] == 3
    assert set(np.unique(labels)) == {0, 1}


SLOVENIA = "sites/eolearn_slovenia_sentinel2_2015"
SLOVENIA_BANDS = [
    Band(name, common, 1.0, 0.0, "reflectance", f"{name} top-of-atmosphere reflectance")
    for name, common in (
        ("B1", "coastal"),
        ("B2", "blue"),
        ("B3", "green"),
        ("B4", "red"),
        ("B5", "rededge1"),
        ("B6", "rededge2"),
        ("B7", "rededge3"),
        ("B8", "nir"),
        ("B8A", "nir08"),
        ("B9", "nir09"),
        ("B10", "cirrus"),
        ("B11", "swir16"),
        ("B12", "swir22"),
    )
]


@pytest.mark.filterwarnings("ignore:scene slovenia-.* has no quality band")
def test_run_change_over_two_sentinel2_dates_reads_both_at_30_m(
    shared_data: Path, resampling_forest: Path, tmp_path: Path
) -> None:
    entries = [
        RasterEntry(
            id=f"slovenia-{day}",
            collection="landsat",  # the scene collection geoseg searches
            href=f"{SLOVENIA}/image_{day}.tif",
            title=f"Sentinel-2A L1C, Slovenia, {day}",
            bands=SLOVENIA_BANDS,
            datetime=when,
        )
        for day, when in (
            ("20150711", "2015-07-11T10:00:08Z"),
            ("20150909", "2015-09-09T10:00:17Z"),
        )
    ]
    for entry in entries:
        data_file(entry.href)  # checked against the data directory's checksums
    location = save_scene_catalog(
        [raster_item(entry) for entry in entries], tmp_path / "catalog", "sentinel2"
    )
    with rasterio.open(shared_data / entries[0].href) as dataset:
        bounds = tuple(dataset.bounds)
        crs = dataset.crs.to_string()
    regions = tmp_path / "regions.gpkg"
    gpd.GeoDataFrame({"id": ["patch"]}, geometry=[box(*bounds)], crs=crs).to_file(regions)
    bbox = make_bbox(bounds, crs)
    lines: list[str] = []
    with started_client(1, threads_per_worker=2) as client:
        outputs = run_change(
            bbox,
            "2015-07-11",
            "2015-09-09",
            regions=regions,
            out=tmp_path / "change.gpkg",
            model=resampling_forest,
            catalog=location,
            settings=InferenceSettings(device="cpu"),
            progress=False,
            client=client,
            report=lines.append,
        )
    assert sum("in 3x3 blocks (block mean of valid pixels)" in line for line in lines) == 1
    fine = target_grid(bbox, search(bbox, "2015-07-11", location=location))
    assert outputs.grid == fine.zoom_out(3) and outputs.grid.shape == (34, 34)
    manifest = json.loads(outputs.manifest.read_text())
    assert manifest["parameters"]["resampling"]["factor"] == 3
    for path in outputs.labels:
        with rasterio.open(path) as dataset:
            assert dataset.shape == (34, 34)
            assert dataset.res == pytest.approx((29.98, 29.99), abs=0.01)
            assert set(np.unique(dataset.read(1))) <= {0, 1}
