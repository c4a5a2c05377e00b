"""Instance prediction on a Dask cluster: the same instances for every chunk size and cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from distributed import Client

from geoseg.cli import cli
from geoseg.errors import ConfigError, OutputError
from geoseg.io.instances import read_id_raster, read_instances
from geoseg.predict import detect as detect_module
from geoseg.predict.detect import ScaledSource, detect_layout
from geoseg.predict.inference import cached_model, model_key, model_loads
from geoseg.predict.instances import InstanceSettings, paint_window, resolve_instances
from geoseg.predict.preprocess import sample_windows, scene_statistics
from geoseg.predict.settings import InferenceSettings
from geoseg.predict.sources import FileSource
from geoseg.predict.tiling import make_layout
from tests.clusters import started_client
from tests.conftest import ORIGIN, write_geotiff
from tests.predict_fixtures import make_maskrcnn_dir, make_model_dir
from workflows import predict_instances as instances_workflow
from workflows.predict_instances import detector_settings, predict_instances_file

SETTINGS = InstanceSettings(min_score=0.46)
PIXEL = Affine(0.5, 0.0, ORIGIN[0], 0.0, -0.5, ORIGIN[1])


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with started_client(2) as connected:
        yield connected


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_maskrcnn_dir(tmp_path_factory.mktemp("model") / "tiny-maskrcnn")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 x 560 px (an overview level) of bright blocks on noise, band 'panchromatic'."""
    generator = np.random.default_rng(5)
    data = generator.integers(100, 400, (1, 160, 560)).astype(np.uint16)
    for row, col in generator.integers(0, [140, 540], (40, 2)):
        data[0, row : row + 18, col : col + 22] += 1500
    path = tmp_path_factory.mktemp("scene") / "scene.tif"
    return write_geotiff(path, data, transform=PIXEL, descriptions=["panchromatic"])


def _reference(image: Path, model_dir: Path) -> np.ndarray:
    """The ids of the whole scene painted in this process, from the library alone."""
    source = FileSource.open(image)
    module = cached_model(model_key(model_dir, "cpu")).module
    card = cached_model(model_key(model_dir, "cpu")).card
    samples = [source.read(window) for window in sample_windows(source.grid)]
    statistics = scene_statistics(source.label, samples, card.scaling.percentiles)
    layout = make_layout(source.grid.height, source.grid.width, 64, 16)
    detections = detect_layout(
        module, ScaledSource(source, card.scaling, statistics), layout, SETTINGS
    )
    instances = resolve_instances(layout, detections, SETTINGS)
    ids, _ = paint_window(layout, instances, source.grid.full_window)
    return ids


def test_instances_do_not_depend_on_chunk_size_or_cluster(
    client: Client, model_dir: Path, image: Path, tmp_path: Path
) -> None:
    loads = model_loads()
    results = {}
    for chunk in (48, 200):
        raster, polygons = tmp_path / f"ids{chunk}.tif", tmp_path / f"ids{chunk}.gpkg"
        result = predict_instances_file(
            image,
            model_dir,
            InferenceSettings(chunk_size=chunk, batch_size=3, device="cpu"),
            SETTINGS,
            raster,
            polygons,
            client=client,
            progress=False,
        )
        ids, classes, tags = read_id_raster(raster)
        with rasterio.open(raster, overview_level=0) as overview:
            reduced = overview.read()
        frame = pyogrio.read_dataframe(polygons, layer="instances")
        results[chunk] = (ids, classes, reduced, frame)
        assert result.instances == int(ids.max()) == len(frame) > 3
        assert tags["GEOSEG_TASK"] == "instance"
        assert not list(tmp_path.glob(".geoseg-work-*"))
    # the model is loaded once per worker process (both workers are threads of this one)
    assert model_loads() - loads <= 1
    (ids, classes, reduced, frame), (ids2, classes2, reduced2, frame2) = results.values()
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(classes, classes2)
    np.testing.assert_array_equal(reduced, reduced2)
    np.testing.assert_array_equal(classes, (ids > 0).astype(np.int64))
    assert frame.geometry.geom_equals(frame2.geometry).all()
    assert list(frame["area_m2"]) == list(frame2["area_m2"])
    # the cluster's result is the scene painted in one piece by the library in this process
    np.testing.assert_array_equal(ids, _reference(image, model_dir))


def test_predict_command_runs_instances_on_a_scheduler(
    client: Client, model_dir: Path, image: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ids.tif"
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            str(image),
            "--model",
            str(model_dir),
            "--out",
            str(out),
            "--polygons",
            str(tmp_path / "ids.parquet"),
            "--min-score",
            str(SETTINGS.min_score),
            "--chunk-size",
            "128",
            "--device",
            "cpu",
            "--scheduler",
            client.scheduler.address,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "instances, cpu/fp32" in result.output
    ids, _, _ = read_id_raster(out)
    assert ids.max() == len(read_instances(tmp_path / "ids.parquet")) > 0


def test_a_semantic_model_is_refused(client: Client, image: Path, tmp_path: Path) -> None:
    semantic = make_model_dir(tmp_path / "unet", bands=[{"name": "panchromatic"}])
    from workflows.predict_instances import predict_instances_source

    with pytest.raises(ConfigError, match="task: instance"):
        predict_instances_source(
            FileSource.open(image),
            semantic,
            InferenceSettings(device="cpu"),
            SETTINGS,
            tmp_path / "ids.tif",
            client=client,
            progress=False,
        )
    assert not (tmp_path / "ids.tif").exists()


def test_a_detector_runs_in_fp32_unless_asked_otherwise() -> None:
    assert InferenceSettings().precision == "auto"
    assert detector_settings(InferenceSettings()).precision == "fp32"
    assert detector_settings(InferenceSettings(precision="bf16")).precision == "bf16"


def test_a_failed_run_keeps_its_detections_and_the_same_command_resumes(
    client: Client,
    model_dir: Path,
    image: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = InferenceSettings(chunk_size=200, batch_size=4, device="cpu")
    raster = tmp_path / "ids.tif"

    def run(instance_settings: InstanceSettings = SETTINGS) -> None:
        predict_instances_file(
            image, model_dir, settings, instance_settings, raster, client=client, progress=False
        )

    def broken(*args: object) -> int:
        raise OutputError("the disk went away while painting")

    monkeypatch.setattr(instances_workflow, "_paint", broken)
    with pytest.raises(OutputError) as failed:
        run()
    assert "run the same command again to resume" in " ".join(failed.value.__notes__)
    assert not raster.exists()
    assert list(tmp_path.glob(".geoseg-work-*/detections_*.npz"))
    monkeypatch.undo()

    def detected_again(*args: object) -> list[object]:
        raise AssertionError("detected again")

    monkeypatch.setattr(detect_module, "detect_batch", detected_again)
    with pytest.raises(AssertionError, match="detected again"):  # other settings: detect anew
        run(InstanceSettings(min_score=0.47))
    run()  # the same settings: every batch's detections are read back
    np.testing.assert_array_equal(read_id_raster(raster)[0], _reference(image, model_dir))
    assert not list(tmp_path.glob(".geoseg-work-*"))
