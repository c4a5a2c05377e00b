"""``geoseg run-change`` on the two real Chiapas dates with a small seeded forest model."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely

from geoseg.bbox import make_bbox
from geoseg.predict.settings import InferenceSettings
from geoseg.report.manifest import RunManifest
from tests.clusters import started_client
from tests.predict_fixtures import make_model_dir
from workflows.run_change import run_change

pytestmark = [
    pytest.mark.slow,
]

FOREST = [
    {"id": 0, "name": "non-forest", "color": "#e0d080"},
    {"id": 1, "name": "forest", "color": "#1a7a1a"},
]
# inside the 250 x 250 px Chiapas window (EPSG:32615)
UTM_BBOX = (462405.0, 1734315.0, 469905.0, 1741815.0)


def test_two_dates_on_one_grid_give_consistent_change(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    model = make_model_dir(tmp_path / "forest", name="tiny-forest", classes=FOREST)
    west, south, east, north = UTM_BBOX
    middle = (west + east) / 2
    regions = gpd.GeoDataFrame(
        {"id": ["west", "east"]},
        geometry=[shapely.box(west, south, middle, north), shapely.box(middle, south, east, north)],
        crs="EPSG:32615",
    )
    regions.to_file(tmp_path / "regions.gpkg", driver="GPKG", engine="pyogrio")
    out = tmp_path / "change.gpkg"
    with started_client(1, threads_per_worker=2) as client:
        result = run_change(
            make_bbox(UTM_BBOX, "EPSG:32615"),
            "1999-11-18",
            "2002-04-16",
            regions=tmp_path / "regions.gpkg",
            out=out,
            stats=tmp_path / "stats.csv",
            model=model,
            settings=InferenceSettings(chunk_size=128),
            progress=False,
            client=client,
        )
    assert result.scenes == ("chiapas-landsat7-19991118", "chiapas-landsat7-20020416")
    assert result.grid.shape == (250, 250)
    with rasterio.open(result.labels[0]) as before, rasterio.open(result.labels[1]) as after:
        assert before.transform == after.transform and before.crs == after.crs
        first, second = before.read(1), after.read(1)
    # independent count: forest before and non-forest after, both valid, 30 m pixels
    lost = (first == 1) & (second == 0)
    table = pyogrio.read_dataframe(out, layer="regions").set_index("region_id")
    assert table["deforestation_ha"].sum() == pytest.approx(lost.sum() * 900 / 10_000)
    west_half = lost[:, :125].sum() * 900 / 10_000
    assert table.loc["west", "deforestation_ha"] == pytest.approx(west_half)
    assert np.isin(first, [0, 1]).all()  # no nodata in this window
    layers = {name for name, _ in pyogrio.list_layers(out)}
    assert {"regions", "deforestation", "run_manifest"} <= layers
    polygons = pyogrio.read_dataframe(out, layer="deforestation")
    assert set(polygons["run_time"]) <= {"2023-11-14T22:13:20Z"}
    for name in ("stats.csv", "stats.transitions.csv", "stats.regions.csv"):
        assert (tmp_path / name).exists()
    manifest = RunManifest.model_validate_json(result.manifest.read_text(encoding="utf-8"))
    assert [item.id for item in manifest.inputs] == list(result.scenes)
    assert manifest.parameters["forest_classes"] == [1]
