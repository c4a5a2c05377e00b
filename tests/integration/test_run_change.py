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
from geoseg.change.loss import LossRule
from geoseg.predict.settings import InferenceSettings
from geoseg.report.manifest import RunManifest
from tests.clusters import started_client
from tests.geodesic import geodesic_area_m2
from tests.predict_fixtures import make_model_dir
from tests.unit.test_stac_outputs import read_item
from workflows.run_change import run_change

pytestmark = [
    pytest.mark.slow,
]

FOREST = [
    {"id": 0, "name": "non-forest", "color": "#e0d080"},
    {"id": 1, "name": "forest", "color": "#1a7a1a"},
]
ANY_CHANGE = LossRule(min_probability=0.0, min_loss_ha=0.0)
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
            rule=ANY_CHANGE,
            progress=False,
            client=client,
        )
        confident = run_change(
            make_bbox(UTM_BBOX, "EPSG:32615"),
            "1999-11-18",
            "2002-04-16",
            regions=tmp_path / "regions.gpkg",
            out=tmp_path / "confident.gpkg",
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
        transform = before.transform
    # with a rule that keeps every change, the loss is every forest -> non-forest pixel;
    # independent count: forest before and non-forest after, both valid, each pixel's
    # geodesic ground area (30 m UTM pixels are not 900 m2 on the ground)
    lost = (first == 1) & (second == 0)
    ground_ha = np.zeros(lost.shape)
    for row, col in zip(*np.nonzero(lost), strict=True):
        x, y = transform @ (int(col), int(row))
        pixel = shapely.box(x, y - 30.0, x + 30.0, y)
        ground_ha[row, col] = geodesic_area_m2(pixel, "EPSG:32615", 7.5) / 10_000
    table = pyogrio.read_dataframe(out, layer="regions").set_index("region_id")
    assert table["deforestation_ha"].sum() == pytest.approx(ground_ha.sum(), rel=1e-4)
    assert table.loc["west", "deforestation_ha"] == pytest.approx(
        ground_ha[:, :125].sum(), rel=1e-4
    )
    assert np.isin(first, [0, 1]).all()  # no nodata in this window
    layers = {name for name, _ in pyogrio.list_layers(out)}
    assert {"regions", "deforestation", "run_manifest"} <= layers
    polygons = pyogrio.read_dataframe(out, layer="deforestation")
    assert set(polygons["run_time"]) <= {"2023-11-14T22:13:20Z"}
    for name in ("stats.csv", "stats.transitions.csv", "stats.regions.csv"):
        assert (tmp_path / name).exists()
    item = read_item(Path(f"{out}.stac.json"))  # the STAC Item of every output
    assert set(item.assets) == {
        "change",
        "labels_before",
        "labels_after",
        "stats",
        "stats_transitions",
        "stats_regions",
        "manifest",
    }
    assert item.assets["stats"].media_type == "text/csv"
    assert item.assets["manifest"].roles == ["metadata"]
    assert item.datetime is None  # two dates: a range
    assert item.properties["start_datetime"] < item.properties["end_datetime"]
    manifest = RunManifest.model_validate_json(result.manifest.read_text(encoding="utf-8"))
    assert [item.id for item in manifest.inputs] == list(result.scenes)
    assert manifest.parameters["forest_classes"] == [1]
    assert manifest.parameters["loss_rule"] == {"min_probability": 0.0, "min_loss_ha": 0.0}
    assert manifest.parameters["probabilities"] is True
    # November against April: the season flag fires, in the result and the manifest
    assert result.flags[0].code == "season" and result.flags[0].where == "run"
    assert "149 days apart" in result.flags[0].message
    assert manifest.flags[0] == {
        "code": "season",
        "where": "run",
        "message": result.flags[0].message,
    }
    change_grid = pyogrio.read_dataframe(out, layer="change_grid").iloc[0]
    assert "season" in change_grid["flags"]
    # the provenance names what the user gave, not the deleted work folder's files
    assert change_grid["before"] == "chiapas-landsat7-19991118 (1999-11-18)"
    assert change_grid["after"] == "chiapas-landsat7-20020416 (2002-04-16)"
    assert change_grid["regions"] == str(tmp_path / "regions.gpkg")

    # the default rule counts only changes the model is sure of at both dates, in patches
    # of 0.5 ha or more: a subset of the transitions (the tiny model is rarely sure)
    default = LossRule()
    sure = pyogrio.read_dataframe(tmp_path / "confident.gpkg", layer="regions")
    assert sure["loss_ha"].sum() < table["loss_ha"].sum()
    patches = pyogrio.read_dataframe(tmp_path / "confident.gpkg", layer="deforestation")
    assert (patches["area_ha"] >= default.min_loss_ha).all()
    sure_manifest = RunManifest.model_validate_json(confident.manifest.read_text(encoding="utf-8"))
    assert sure_manifest.parameters["loss_rule"] == {
        "min_probability": default.min_probability,
        "min_loss_ha": default.min_loss_ha,
    }
