"""``geoseg run`` and ``run-change`` with ``--instance-model`` over a synthetic scene catalog."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
from distributed import Client
from shapely.geometry import box

from data_catalog.build import Band, RasterEntry, raster_item
from geoseg.bbox import make_bbox
from geoseg.errors import CatalogError, ConfigError
from geoseg.io.instances import read_id_raster
from geoseg.predict.instances import InstanceSettings
from geoseg.predict.settings import InferenceSettings
from tests.catalogs import save_scene_catalog
from tests.clusters import started_client
from tests.conftest import UTM_CRS, write_geotiff
from tests.predict_fixtures import make_maskrcnn_dir, make_model_dir
from tests.unit.test_predict_instances import PIXEL
from workflows.run_bbox import run_bbox
from workflows.run_change import run_change
from workflows.staging import RunOutputs

pytestmark = pytest.mark.filterwarnings("ignore:scene .* has no quality band")

SETTINGS = InferenceSettings(device="cpu", chunk_size=96)
DETECTOR = InstanceSettings(min_score=0.46)
COLOUR = [Band(name, name, 1.0, 0.0, "dn", name) for name in ("blue", "green", "red", "nir")]
PAN = Band("pan", "panchromatic", 1.0, 0.0, "dn", "panchromatic")


def _scene(data_dir: Path, name: str, blocks: int, seed: int) -> Path:
    """Four colour bands and a panchromatic one, 128 x 176 px at 0.5 m, bright blocks."""
    generator = np.random.default_rng(seed)
    data = generator.integers(100, 400, (5, 128, 176)).astype(np.uint16)
    for row, col in generator.integers(0, [110, 155], (blocks, 2)):
        data[:, row : row + 16, col : col + 20] += 1500
    return write_geotiff(data_dir / f"{name}.tif", data, transform=PIXEL)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("GEOSEG_DATA_DIR", str(folder))
    return folder


def _catalog(data_dir: Path, bands: list[Band]) -> Path:
    items = []
    for day, blocks in (("2024-06-01", 8), ("2025-06-01", 14)):
        _scene(data_dir, day, blocks, seed=blocks)
        entry = RasterEntry(
            id=f"scene-{day}",
            collection="landsat",
            href=f"{day}.tif",
            title=day,
            bands=bands,
            datetime=f"{day}T10:00:00Z",
        )
        items.append(raster_item(entry))
    return save_scene_catalog(items, data_dir / "catalog", "test")


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with started_client(2) as connected:
        yield connected


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("models")
    return make_model_dir(folder / "unet", pixel_size_m=0.5), make_maskrcnn_dir(folder / "det")


def _bbox() -> object:
    x, y = PIXEL.c, PIXEL.f
    return make_bbox((x, y - 64.0, x + 88.0, y), UTM_CRS)


def _run(
    catalog: Path, out: Path, model: Path, client: Client, instance_model: Path, **options: Any
) -> RunOutputs:
    """``geoseg run`` over the test bbox at 2024-06-01 with an instance model."""
    return run_bbox(
        _bbox(),  # type: ignore[arg-type]
        "2024-06-01",
        out=out,
        model=model,
        catalog=catalog,
        settings=SETTINGS,
        progress=False,
        client=client,
        instance_model=instance_model,
        **options,
    )


def test_run_writes_the_instances_layer_and_id_raster(
    data_dir: Path, models: tuple[Path, Path], client: Client, tmp_path: Path
) -> None:
    catalog = _catalog(data_dir, [*COLOUR, PAN])
    out = tmp_path / "run.gpkg"
    lines: list[str] = []
    outputs = _run(
        catalog, out, models[0], client, models[1], report=lines.append, instance_settings=DETECTOR
    )
    layers = dict(pyogrio.list_layers(out))
    assert layers["instances"] == "MultiPolygon" and "classes" in layers
    instances = pyogrio.read_dataframe(out, layer="instances")
    ids, classes, tags = read_id_raster(tmp_path / "run.instances.tif")
    assert ids.shape == outputs.grid.shape
    np.testing.assert_array_equal(classes, (ids > 0).astype(np.int64))
    assert len(instances) == ids.max() > 0
    assert sorted(instances["instance_id"]) == sorted(set(np.unique(ids)) - {0})
    assert tags["GEOSEG_TASK"] == "instance"
    manifest = json.loads(outputs.manifest.read_text())
    assert manifest["parameters"]["instance_model"]["name"] == "test-maskrcnn"
    assert manifest["parameters"]["instance_min_score"] == DETECTOR.min_score
    assert manifest["outputs"]["instances"] == "run.instances.tif"
    assert f"instances: {len(instances)} objects" in lines


def test_run_change_adds_the_instances_table(
    data_dir: Path, models: tuple[Path, Path], client: Client, tmp_path: Path
) -> None:
    catalog = _catalog(data_dir, [*COLOUR, PAN])
    x, y = PIXEL.c, PIXEL.f
    regions = tmp_path / "regions.gpkg"
    gpd.GeoDataFrame(
        {"id": ["west", "east"]},
        geometry=[box(x, y - 64, x + 44, y), box(x + 44, y - 64, x + 88, y)],
        crs=UTM_CRS,
    ).to_file(regions)
    out = tmp_path / "change.gpkg"
    outputs = run_change(
        _bbox(),  # type: ignore[arg-type]
        "2024-06-01",
        "2025-06-01",
        regions=regions,
        out=out,
        stats=tmp_path / "stats.csv",
        model=models[0],
        catalog=catalog,
        settings=SETTINGS,
        progress=False,
        client=client,
        instance_model=models[1],
        instance_settings=DETECTOR,
    )
    table = pyogrio.read_dataframe(out, layer="instances")
    before = pyogrio.read_dataframe(out, layer="instances_before")
    after = pyogrio.read_dataframe(out, layer="instances_after")
    assert set(table["region"]) <= {"west", "east"}
    # the regions cover the whole grid: every instance is counted once
    assert table["instances_before"].sum() == len(before) > 0
    assert table["instances_after"].sum() == len(after) > 0
    assert (tmp_path / "stats.instances.csv").exists()
    for name, frame in (("before", before), ("after", after)):
        ids, _, _ = read_id_raster(tmp_path / f"change.{name}.instances.tif")
        assert ids.max() == len(frame)
    manifest = json.loads(outputs.manifest.read_text())
    assert manifest["parameters"]["instance_model"]["name"] == "test-maskrcnn"


def test_scenes_without_the_detectors_band_are_refused_in_one_line(
    data_dir: Path, models: tuple[Path, Path], client: Client, tmp_path: Path
) -> None:
    catalog = _catalog(data_dir, [*COLOUR, Band("swir", "swir16", 1.0, 0.0, "dn", "swir")])
    with pytest.raises(CatalogError) as refused:
        _run(catalog, tmp_path / "run.gpkg", models[0], client, models[1])
    message = str(refused.value)
    assert "\n" not in message
    assert "reads band(s) panchromatic" in message and "use a catalog whose scenes" in message
    assert not list(tmp_path.glob("run*"))
    with pytest.raises(ConfigError, match="name an instance model"):
        _run(catalog, tmp_path / "run.gpkg", models[0], client, models[0])
