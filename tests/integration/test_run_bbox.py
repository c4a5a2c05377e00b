"""``geoseg run`` end to end on the real Zion scene with a small seeded model.

One uninterrupted default run (local multi-process cluster) is the reference;
a run killed with SIGKILL and resumed, a run on a cluster the test starts
(through ``--scheduler``) and the same bbox given in UTM must reproduce it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyogrio
import pytest
import rasterio
import shapely
from distributed import Client
from pystac.extensions.projection import ProjectionExtension

from geoseg.bbox import make_bbox, to_crs
from geoseg.cli import main
from geoseg.errors import BBoxError, CatalogError, OutputError
from geoseg.predict.settings import InferenceSettings
from geoseg.report.manifest import RunManifest
from tests.clusters import started_cluster
from tests.geodesic import geodesic_area_m2
from tests.predict_fixtures import make_model_dir
from tests.unit.test_geoparquet import check_geoparquet
from tests.unit.test_stac_outputs import read_item
from workflows.cluster import WORKER_ENV
from workflows.run_bbox import run_bbox
from workflows.staging import RunOutputs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:scene zion-landsat8-20150818 has no quality band"),
]

# about 250 x 320 px of the Zion scene, away from its nodata border
LONLAT = (-113.06, 37.20, -112.975, 37.27)
FIXED_EPOCH = "1700000000"
CHUNK = 64
SETTINGS = InferenceSettings(chunk_size=CHUNK)
OUTPUT_NAMES = ("out.gpkg", "out.tif", "out.png")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny", name="tiny-landcover")


@pytest.fixture(scope="module")
def fixed_time() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", FIXED_EPOCH)
        yield


@pytest.fixture(scope="module")
def reference(
    shared_data: Path, model: Path, tmp_path_factory: pytest.TempPathFactory, fixed_time: None
) -> RunOutputs:
    """The default run: embedded catalog, default local cluster, uninterrupted."""
    out = tmp_path_factory.mktemp("reference") / "out.gpkg"
    return run_bbox(
        make_bbox(LONLAT), "2015-08-18", out=out, model=model, settings=SETTINGS, progress=False
    )


def _outputs(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in OUTPUT_NAMES}


def test_an_onnxruntime_run_records_its_engine_and_agrees(
    model: Path, reference: RunOutputs, tmp_path: Path
) -> None:
    out = tmp_path / "out.gpkg"
    settings = InferenceSettings(chunk_size=CHUNK, engine="onnxruntime", device="cpu")
    run = run_bbox(make_bbox(LONLAT), "2015-08-18", out=out, model=model, settings=settings)
    manifest = RunManifest.model_validate_json(run.manifest.read_text(encoding="utf-8"))
    assert manifest.parameters["engine"] == manifest.parameters["engine_used"] == "onnxruntime"
    assert manifest.parameters["precision_used"] == "fp32"
    with (
        rasterio.open(tmp_path / "out.tif") as found,
        rasterio.open(reference.geopackage.with_suffix(".tif")) as expected,
    ):
        assert float((found.read(1) == expected.read(1)).mean()) >= 0.999


def test_reference_run_writes_every_output(reference: RunOutputs) -> None:
    folder = reference.geopackage.parent
    assert sorted(path.name for path in folder.iterdir()) == [
        "out.gpkg",
        "out.gpkg.stac.json",
        "out.manifest.json",
        "out.png",
        "out.tif",
    ]
    item = read_item(folder / "out.gpkg.stac.json")
    assert set(item.assets) == {"polygons", "labels", "quicklook", "manifest"}
    assert item.datetime is not None and item.datetime.date().isoformat() == "2015-08-18"
    assert item.properties["processing:datetime"] == "2023-11-14T22:13:20Z"
    assert "zion-landsat8-20150818" in item.properties["processing:lineage"]
    assert ProjectionExtension.ext(item).shape == list(reference.grid.shape)
    layers = dict(pyogrio.list_layers(reference.geopackage))
    assert {"classes", "class_areas", "run_manifest", "layer_styles"} <= set(layers)
    polygons = pyogrio.read_dataframe(reference.geopackage, layer="classes")
    areas = pyogrio.read_dataframe(reference.geopackage, layer="class_areas")
    # the area table sums the polygons; the polygons cover every valid grid pixel
    assert areas["area_m2"].sum() == pytest.approx(polygons["area_m2"].sum())
    # ground areas: the geodesic area of the grid's extent (UTM 12N), not pixels x 900 m2
    extent = shapely.box(*reference.grid.bounds)
    ground = geodesic_area_m2(extent, reference.grid.crs.to_string(), 30.0)
    assert polygons["area_m2"].sum() == pytest.approx(ground, rel=1e-5)
    assert set(polygons["run_time"]) == {"2023-11-14T22:13:20Z"}
    manifest = RunManifest.model_validate_json(reference.manifest.read_text(encoding="utf-8"))
    assert manifest.inputs[0].id == "zion-landsat8-20150818"
    assert manifest.inputs[0].sha256.startswith("55424d86")
    assert manifest.model.name == "tiny-landcover"
    # asked for auto; the card records no bf16 agreement, so fp32 on any CPU
    assert manifest.parameters["precision"] == "auto"
    # Zion's 30 m UTM pixels, 2-3 degrees off the zone's central meridian: 30.0 m on the ground
    assert manifest.parameters["pixel_size_check"] == "ok"
    assert manifest.parameters["model_pixel_size_m"] == 30.0
    assert manifest.parameters["scene_pixel_size_m"] == pytest.approx(30.0, rel=2e-3)
    assert (manifest.parameters["device_used"], manifest.parameters["precision_used"]) in {
        ("cpu", "fp32"),
        ("cuda", "bf16"),
        ("cuda", "fp16"),
    }
    assert (manifest.parameters["engine"], manifest.parameters["engine_used"]) == ("torch", "torch")
    assert {"search_s", "predict_s", "vectorize_s", "total_s"} <= set(manifest.timings_s)
    connection = sqlite3.connect(reference.geopackage)
    rows = dict(connection.execute("SELECT key, value FROM run_manifest").fetchall())
    connection.close()
    assert "timings_s" not in rows and '"run_id"' not in rows
    assert rows["run_id"] == f'"{manifest.run_id}"'
    assert not Path(str(reference.geopackage) + ".geoseg-work").exists()


def test_killed_run_resumes_to_identical_outputs(
    reference: RunOutputs, model: Path, tmp_path: Path, fixed_time: None
) -> None:
    out = tmp_path / "out.gpkg"
    command = [
        sys.executable,
        "-m",
        "geoseg",
        "run",
        "--bbox",
        ",".join(str(value) for value in LONLAT),
        "--datetime",
        "2015-08-18",
        "--model",
        str(model),
        "--out",
        str(out),
        "--chunk-size",
        str(CHUNK),
    ]
    work = Path(str(out) + ".geoseg-work")
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    killed = False
    try:
        for _ in range(6000):  # bounded: at most 10 minutes of 0.1 s polls
            if any(work.rglob("summary_*.json")):
                os.killpg(process.pid, signal.SIGKILL)
                killed = True
                break
            try:
                process.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        if process.poll() is None and not killed:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert killed, "the run finished before any chunk was seen; it could not be killed"
    assert not out.exists() and not (tmp_path / "out.tif").exists()
    finished_before = len(list(work.rglob("summary_*.json")))
    assert finished_before >= 1
    # Dask's warnings shown: a worker killed at shutdown would say "still alive"
    environment = {**os.environ, "DASK_LOGGING__DISTRIBUTED": "warning"}
    resumed = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    assert resumed.returncode == 0, resumed.stderr
    for noise in ("still alive", "Traceback", "Exception"):
        assert noise not in resumed.stderr
    # the local cluster started during the catalog search; the manifest says how long it took
    timings = RunManifest.model_validate_json(
        (tmp_path / "out.manifest.json").read_text(encoding="utf-8")
    ).timings_s
    assert {"cluster_start_s", "cluster_wait_s", "predict_s"} <= set(timings)
    assert timings["cluster_wait_s"] <= timings["cluster_start_s"] + 0.5
    reused = [line for line in resumed.stderr.splitlines() if line.startswith("predicted:")]
    assert reused and int(reused[0].split(", ")[1].split()[0]) >= finished_before
    assert _outputs(tmp_path) == _outputs(reference.geopackage.parent)


def test_cluster_started_by_the_test_and_utm_bbox_give_the_reference(
    reference: RunOutputs, model: Path, tmp_path: Path, fixed_time: None
) -> None:
    with started_cluster(2, processes=True, env=WORKER_ENV) as cluster:
        # the command line, pointed at the cluster's scheduler
        status = main(
            [
                "-q",
                "run",
                "--bbox",
                ",".join(str(value) for value in LONLAT),
                "--datetime",
                "2015-08-18",
                "--model",
                str(model),
                "--out",
                str(tmp_path / "out.gpkg"),
                "--chunk-size",
                str(CHUNK),
                "--scheduler",
                cluster.scheduler_address,
            ]
        )
        assert status in (0, None)
        assert _outputs(tmp_path) == _outputs(reference.geopackage.parent)

        # the same area given in the scene's UTM zone
        utm = to_crs(make_bbox(LONLAT), "EPSG:32612")
        (tmp_path / "utm").mkdir()
        with Client(cluster, set_as_default=False) as client:
            pids = set(client.run(os.getpid).values())
            assert len(pids) == 2 and os.getpid() not in pids
            in_utm = run_bbox(
                make_bbox(utm.bounds, "EPSG:32612"),
                "2015-08-18",
                out=tmp_path / "utm" / "out.gpkg",
                model=model,
                settings=SETTINGS,
                progress=False,
                client=client,
            )
    assert in_utm.grid == reference.grid
    assert in_utm.labels[0].read_bytes() == reference.labels[0].read_bytes()
    for layer in ("classes", "class_areas"):
        expected = pyogrio.read_dataframe(reference.geopackage, layer=layer)
        actual = pyogrio.read_dataframe(in_utm.geopackage, layer=layer)
        assert actual.equals(expected), layer
    assert in_utm.quicklook is not None and reference.quicklook is not None
    assert in_utm.quicklook.read_bytes() == reference.quicklook.read_bytes()


def test_a_parquet_out_gets_the_reference_polygons_as_geoparquet(
    reference: RunOutputs, model: Path, tmp_path: Path, fixed_time: None
) -> None:
    out = tmp_path / "out.parquet"
    run_bbox(
        make_bbox(LONLAT), "2015-08-18", out=out, model=model, settings=SETTINGS, progress=False
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "out.class_areas.parquet",
        "out.manifest.json",
        "out.parquet",
        "out.parquet.stac.json",
        "out.png",
        "out.tif",
    ]
    polygons = check_geoparquet(out, reference.geopackage, "classes")
    areas = pd.read_parquet(tmp_path / "out.class_areas.parquet")
    expected = pyogrio.read_dataframe(reference.geopackage, layer="class_areas")
    pd.testing.assert_frame_equal(areas, pd.DataFrame(expected), check_dtype=False)
    assert areas["area_m2"].sum() == pytest.approx(polygons["area_m2"].sum())
    item = read_item(tmp_path / "out.parquet.stac.json")
    assert item.assets["polygons"].media_type == "application/vnd.apache.parquet"
    assert "class_areas" in item.assets


def test_bad_requests_fail_before_any_work(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.gpkg"
    with pytest.raises(BBoxError, match="outside every scene"):
        run_bbox(make_bbox((10, 10, 11, 11)), "2015-08-18", out=out, model=model)
    with pytest.raises(CatalogError, match="scenes there"):
        run_bbox(make_bbox(LONLAT), "2020-01-01", out=out, model=model)
    with pytest.raises(OutputError, match=r"unknown polygon output format '\.shp'"):
        run_bbox(make_bbox(LONLAT), "2015-08-18", out=tmp_path / "out.shp", model=model)
    assert list(tmp_path.iterdir()) == []
