"""``run-change`` on the real Chiapas pair: the 2002 scene's Fmask clouds and shadows are masked."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.features import rasterize
from scipy import ndimage

from geoseg.bbox import make_bbox
from geoseg.labels import LABEL_NODATA
from geoseg.predict.settings import InferenceSettings
from geoseg.report.manifest import RunManifest
from tests.clusters import started_client
from tests.predict_fixtures import make_model_dir
from workflows.run_change import run_change

pytestmark = [pytest.mark.slow]

FOREST = [
    {"id": 0, "name": "non-forest", "color": "#e0d080"},
    {"id": 1, "name": "forest", "color": "#1a7a1a"},
]
UTM_BBOX = (462405.0, 1734315.0, 469905.0, 1741815.0)  # the whole 250 x 250 px stacks
STACK_2002 = "chiapas_twodate/LE70220492002106EDC00_stack.gtif"


def test_masked_pixels_are_nodata_and_counted_as_masked(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    model = make_model_dir(tmp_path / "forest", name="tiny-forest", classes=FOREST)
    regions = gpd.GeoDataFrame({"id": ["all"]}, geometry=[shapely.box(*UTM_BBOX)], crs="EPSG:32615")
    regions.to_file(tmp_path / "regions.gpkg", driver="GPKG", engine="pyogrio")
    out = tmp_path / "change.gpkg"
    with started_client(1, threads_per_worker=2) as client:
        result = run_change(
            make_bbox(UTM_BBOX, "EPSG:32615"),
            "1999-11-18",
            "2002-04-16",
            regions=tmp_path / "regions.gpkg",
            out=out,
            model=model,
            settings=InferenceSettings(chunk_size=96),
            mask_buffer=1,
            progress=False,
            client=client,
        )
    with rasterio.open(shared_data / STACK_2002) as stack:
        codes = stack.read(8)
        transform = stack.transform
    cloudy = np.isin(codes, [2, 4])  # Fmask shadow and cloud
    masked = ndimage.distance_transform_cdt(~cloudy, metric="chessboard") <= 1
    with rasterio.open(result.labels[0]) as before, rasterio.open(result.labels[1]) as after:
        assert after.transform == transform
        first, second = before.read(1), after.read(1)
    assert not (first == LABEL_NODATA).any()  # 1999: band 8 all clear
    assert ((second == LABEL_NODATA) == masked).all()

    row = pyogrio.read_dataframe(out, layer="regions").set_index("region_id").loc["all"]
    pixel_ha = row["region_area_ha"] / first.size  # ground areas vary by < 1e-5 over the scene
    assert row["masked_before_ha"] == 0
    assert row["masked_after_ha"] == pytest.approx(masked.sum() * pixel_ha, rel=1e-5)
    assert row["masked_after_share"] == pytest.approx(masked.mean(), rel=1e-5)
    loss = pyogrio.read_dataframe(out, layer="deforestation")
    if len(loss):
        burned = rasterize(loss.geometry, out_shape=codes.shape, transform=transform)
        assert not (burned.astype(bool) & masked).any()  # no loss on a masked pixel

    manifest = RunManifest.model_validate_json(result.manifest.read_text(encoding="utf-8"))
    assert manifest.parameters["mask_buffer"] == 1
    quality = {scene.scene: scene for scene in manifest.quality}
    assert quality["chiapas-landsat7-19991118"].masked_pixels == 0
    after_quality = quality["chiapas-landsat7-20020416"]
    assert (after_quality.quality_band, after_quality.convention) == (8, "fmask")
    assert after_quality.masked_pixels == masked.sum()
    assert after_quality.masked_share == pytest.approx(masked.mean(), abs=1e-6)
