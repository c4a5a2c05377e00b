"""Jobs on a real static STAC catalog in which Chiapas scenes appear one after another.

The catalog is built in ``tmp_path`` with the embedded catalog's own item
builder (``data_catalog.build.raster_item``) over a data directory holding the
two real Chiapas dates and cleared copies with later dates. The scene source is
the real one (:class:`workflows.jobs.CatalogSceneSource`); the change runner is
the deterministic NDVI fake, or the real ``run-change``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from data_catalog.build import SCENES, raster_item
from geoseg.jobs.interfaces import JobBackend
from geoseg.jobs.outputs import CUMULATIVE_FILE
from geoseg.jobs.runner import run_now
from geoseg.jobs.spec import JobSpec, validate_mapping
from geoseg.jobs.state import JobStore
from tests.catalogs import save_scene_catalog
from tests.clusters import started_cluster
from tests.predict_fixtures import make_fixed_conv_dir
from tests.unit.jobs_fakes import NdviChangeRunner, cleared_copy
from workflows.jobs import CatalogSceneSource, RunChangeRunner

CHIAPAS_BBOX = [462405, 1734315, 469905, 1741815]
NOW = datetime(2026, 1, 10, tzinfo=UTC)


@pytest.fixture
def growing_catalog(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, object]:
    """A data dir + static catalog; ``publish(n)`` writes the catalog with the first n scenes."""
    data = tmp_path / "data"
    (data / "chiapas_twodate").mkdir(parents=True)
    for name in ("LE70220491999322EDC01_stack.gtif", "LE70220492002106EDC00_stack.gtif"):
        (data / "chiapas_twodate" / name).symlink_to(shared_data / "chiapas_twodate" / name)
    (data / "chiapas_twodate" / "LE70220491999322EDC01_stack.gtif.aux.xml").symlink_to(
        shared_data / "chiapas_twodate" / "LE70220491999322EDC01_stack.gtif.aux.xml"
    )
    (data / "copies").mkdir()
    monkeypatch.setenv("GEOSEG_DATA_DIR", str(data))
    chiapas = [entry for entry in SCENES if entry.id.startswith("chiapas")]
    later = replace(chiapas[1], extra_assets=[])
    copies = []
    for number in range(2):
        href = f"copies/chiapas_cleared_{number}.tif"
        cleared_copy(
            shared_data / "chiapas_twodate" / "LE70220492002106EDC00_stack.gtif",
            data / href,
            slice(30 + 80 * number, 90 + 80 * number),
            slice(20, 130),
        )
        copies.append(
            replace(
                later,
                id=f"chiapas-cleared-{number}",
                href=href,
                title=f"cleared copy {number}",
                datetime=f"2003-0{number + 1}-20T16:00:00Z",
            )
        )
    scenes = [*chiapas, *copies]
    location = tmp_path / "catalog"

    def publish(count: int) -> None:
        save_scene_catalog([raster_item(entry) for entry in scenes[:count]], location, "growing")

    return location, publish


def job_spec(tmp_path: Path, catalog: Path) -> JobSpec:
    return validate_mapping(
        JobSpec,
        {
            "name": "chiapas-real",
            "area": {"bbox": CHIAPAS_BBOX, "bbox_crs": "EPSG:32615"},
            "catalog": {"catalog": str(catalog / "catalog.json")},
            "schedule": {"cron": "0 6 * * *"},
            "output_dir": str(tmp_path / "out"),
        },
        "test spec",
    )


def test_real_catalog_scenes_appearing_trigger_one_change_run_each(
    tmp_path: Path, growing_catalog: tuple[Path, object]
) -> None:
    location, publish = growing_catalog
    store = JobStore(tmp_path / "jobs.sqlite")
    store.add_job(job_spec(tmp_path, location), NOW)
    backend = JobBackend(scenes=CatalogSceneSource(), runner=NdviChangeRunner())
    clock = iter(NOW + timedelta(hours=hour) for hour in range(1000))
    statuses = []
    for count in (2, 2, 3, 3, 4):
        publish(count)  # type: ignore[operator]
        result = run_now(store, "chiapas-real", backend, lambda: next(clock))
        statuses.append((result.status, result.message))
    assert statuses == [
        ("succeeded", "change chiapas-landsat7-19991118 -> chiapas-landsat7-20020416"),
        ("no_new_data", "no new scene after chiapas-landsat7-20020416"),
        ("succeeded", "change chiapas-landsat7-20020416 -> chiapas-cleared-0"),
        ("no_new_data", "no new scene after chiapas-cleared-0"),
        ("succeeded", "change chiapas-cleared-0 -> chiapas-cleared-1"),
    ]
    assert len(list((tmp_path / "out" / "runs").iterdir())) == 3
    assert (tmp_path / "out" / CUMULATIVE_FILE).exists()


@pytest.mark.slow
def test_real_run_change_runner(tmp_path: Path, growing_catalog: tuple[Path, object]) -> None:
    """One change run through the real run-change, with a tiny seeded model."""
    model = make_fixed_conv_dir(tmp_path / "model")
    location, publish = growing_catalog
    publish(3)  # type: ignore[operator]
    spec = job_spec(tmp_path, location).model_copy(update={"model": str(model)})
    store = JobStore(tmp_path / "jobs.sqlite")
    store.add_job(spec, NOW)
    # threads, not processes: the test architecture is registered in this process only
    with started_cluster(1, threads_per_worker=2) as cluster:
        runner = RunChangeRunner(scheduler=cluster.scheduler_address)
        backend = JobBackend(scenes=CatalogSceneSource(), runner=runner)
        result = run_now(store, "chiapas-real", backend, lambda: NOW)
    assert result.status == "succeeded", result.message
    assert result.output_dir is not None
    (run,) = store.runs("chiapas-real")
    assert run.model_hash == RunChangeRunner().model_hash(str(model))
    change_files = sorted(path.name for path in (result.output_dir / "change").iterdir())
    assert "change.gpkg" in change_files
    assert not list(result.output_dir.parent.glob(".*.work"))  # work folder removed
    report = (result.output_dir / "report.html").read_text()
    assert 'id="map-quicklook"' in report and 'id="regions-table"' in report
    assert "<td>bbox</td>" in report
    # the real runner feeds the report's legend, scale bar, date, attribution and flags
    assert 'id="legend"' in report and 'id="scale-bar" data-length-m="1000"' in report
    assert "acquired 2003-01-20" in report
    assert "open-geo-tutorial (C. Holden), CC BY-SA 3.0" in report
    assert '<li data-code="season">' in report  # 1999-11-18 -> 2003-01-20: 63 days apart
    manifest = (result.output_dir / "run.json").read_text()
    assert '"after_classes": "change/change.after.tif"' in manifest
