"""Incremental job runs on a scene list where scenes appear one after another (fake runner)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyogrio
import pytest

from geoseg.errors import JobError
from geoseg.jobs.outputs import CUMULATIVE_FILE
from geoseg.jobs.runner import RunSettings, run_due, run_now
from geoseg.jobs.spec import JobSpec, validate_mapping
from geoseg.jobs.state import JobStore
from tests.unit.jobs_fakes import backend, chiapas_scenes, cleared_copy, write_scene_list

NOW = datetime(2026, 1, 10, 12, tzinfo=UTC)


def make_spec(tmp_path: Path, **changes: object) -> JobSpec:
    data: dict[str, object] = {
        "name": "chiapas",
        "area": {"bbox": [462405, 1734315, 469905, 1741815], "bbox_crs": "EPSG:32615"},
        "catalog": {"catalog": str(tmp_path / "scenes.json")},
        "schedule": {"interval": "1d", "start": "2026-01-01T00:00:00Z"},
        "output_dir": str(tmp_path / "out"),
        "misfire": "once",
    }
    data.update(changes)
    return validate_mapping(JobSpec, data, "test spec")


@pytest.fixture
def scenes(tmp_path: Path, shared_data: Path) -> Callable[[int], None]:
    """``scenes(n)`` publishes the two Chiapas dates plus ``n - 2`` later cleared copies."""
    real = chiapas_scenes(shared_data)
    copies = []
    for number in range(3):
        target = tmp_path / f"copy_{number}.tif"
        rows = slice(20 + 60 * number, 60 + 60 * number)
        cleared_copy(real[1][2], target, rows, slice(30 + 50 * number, 110 + 50 * number))
        copies.append((f"COPY{number}", f"2003-0{number + 1}-15T16:30:00+00:00", target))
    everything = [*real, *copies]

    def publish(count: int) -> None:
        write_scene_list(tmp_path / "scenes.json", everything[:count])

    return publish


def test_scenes_appearing_trigger_exactly_one_change_run_each(
    tmp_path: Path, scenes: Callable[[int], None]
) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    spec = make_spec(tmp_path)
    store.add_job(spec, NOW)
    job_backend = backend()
    clock = iter(NOW + timedelta(days=day) for day in range(100))

    def tick() -> datetime:
        return next(clock)

    scenes(1)
    first = run_now(store, "chiapas", job_backend, tick)
    assert (first.status, first.message) == ("baseline", "baseline scene LE70220491999322EDC01")
    assert run_now(store, "chiapas", job_backend, tick).status == "no_new_data"

    scenes(2)
    second = run_now(store, "chiapas", job_backend, tick)
    assert second.status == "succeeded"
    assert second.message == "change LE70220491999322EDC01 -> LE70220492002106EDC00"
    nothing = run_now(store, "chiapas", job_backend, tick)
    assert (nothing.status, nothing.message) == (
        "no_new_data",
        "no new scene after LE70220492002106EDC00",
    )

    scenes(3)
    third = run_now(store, "chiapas", job_backend, tick)
    assert third.message == "change LE70220492002106EDC00 -> COPY0"
    assert run_now(store, "chiapas", job_backend, tick).status == "no_new_data"

    runs = store.runs("chiapas")
    assert [run.status for run in runs] == [
        "baseline",
        "no_new_data",
        "succeeded",
        "no_new_data",
        "succeeded",
        "no_new_data",
    ]
    run_folders = sorted((tmp_path / "out" / "runs").iterdir())
    assert [folder.name[:20] for folder in run_folders] == [
        "19991118_to_20020416",
        "20020416_to_20030115",
    ]
    assert second.output_dir is not None and third.output_dir is not None
    for result in (second, third):
        assert result.output_dir is not None
        names = {path.name for path in result.output_dir.iterdir()}
        assert names == {
            "change",
            "deforestation.gpkg",
            "flags.csv",
            "loss_by_region.csv",
            "report.html",
            "run.json",
        }

    # the cumulative GeoPackage holds both periods' polygons and the per-region time series
    cumulative = tmp_path / "out" / CUMULATIVE_FILE
    layers = {name for name, _ in pyogrio.list_layers(cumulative)}
    assert layers == {"deforestation", "loss_by_region", "flags"}
    polygons = pyogrio.read_dataframe(cumulative, layer="deforestation")
    assert set(polygons["period_end"]) == {"2002-04-16", "2003-01-15"}
    series = pyogrio.read_dataframe(cumulative, layer="loss_by_region")
    assert list(series["period_end"]) == ["2002-04-16", "2002-04-16", "2003-01-15", "2003-01-15"]
    per_run = pd.read_csv(third.output_dir / "loss_by_region.csv", dtype={"region_id": str})
    latest = series[series["period_end"] == "2003-01-15"].set_index("region_id")
    for row in per_run.itertuples():
        assert latest.loc[row.region_id, "forest_loss_ha"] == pytest.approx(row.forest_loss_ha)
    # the cleared block of COPY0 (rows 20-60, cols 30-110) is mostly in the west half
    assert latest.loc["west", "forest_loss_ha"] > latest.loc["east", "forest_loss_ha"]
    # each polygon's area adds up to the region's hectares (30 m pixels)
    third_polygons = polygons[polygons["period_end"] == "2003-01-15"]
    west_area_ha = third_polygons[third_polygons["region_id"] == "west"].area.sum() / 10_000
    assert west_area_ha == pytest.approx(latest.loc["west", "forest_loss_ha"])


def test_scheduled_periods_each_see_only_scenes_up_to_their_end(
    tmp_path: Path, scenes: Callable[[int], None]
) -> None:
    """misfire 'each' backfills: a period only sees scenes acquired before its end."""
    scenes(5)
    spec = make_spec(
        tmp_path,
        schedule={"cron": "0 0 1 * *", "start": "2002-12-01T00:00:00Z"},
        misfire="each",
    )
    store = JobStore(tmp_path / "jobs.sqlite")
    store.add_job(spec, NOW)
    results = run_due(store, backend(), lambda: datetime(2003, 4, 2, tzinfo=UTC))
    assert [(result.period_key[:10], result.status) for result in results] == [
        ("2003-01-01", "succeeded"),  # 1999 -> 2002 (copies not acquired yet)
        ("2003-02-01", "succeeded"),  # 2002 -> COPY0
        ("2003-03-01", "succeeded"),  # COPY0 -> COPY1
        ("2003-04-01", "succeeded"),  # COPY1 -> COPY2
    ]
    pairs = [(run.before_scene, run.after_scene) for run in store.runs("chiapas")]
    assert pairs == [
        ("LE70220491999322EDC01", "LE70220492002106EDC00"),
        ("LE70220492002106EDC00", "COPY0"),
        ("COPY0", "COPY1"),
        ("COPY1", "COPY2"),
    ]
    assert run_due(store, backend(), lambda: datetime(2003, 4, 2, tzinfo=UTC)) == []
    later = run_due(store, backend(), lambda: datetime(2003, 7, 2, tzinfo=UTC))
    assert [(result.period_key, result.status) for result in later] == [
        ("2003-05-01T00:00:00Z", "no_new_data"),
        ("2003-06-01T00:00:00Z", "no_new_data"),
        ("2003-07-01T00:00:00Z", "no_new_data"),
    ]


def test_failed_runs_are_recorded_and_retried(
    tmp_path: Path, scenes: Callable[[int], None]
) -> None:
    spec = make_spec(tmp_path)
    store = JobStore(tmp_path / "jobs.sqlite")
    store.add_job(spec, NOW)
    (tmp_path / "scenes.json").write_text("not json", encoding="utf-8")
    clock = lambda: NOW  # noqa: E731
    failed = run_due(store, backend(), clock)
    assert [result.status for result in failed] == ["failed"]
    assert "JSONDecodeError" in failed[0].message
    assert store.runs("chiapas")[0].error == failed[0].message
    scenes(2)
    retried = run_due(store, backend(), clock, RunSettings(max_attempts=3))
    assert [(result.period_key, result.status) for result in retried] == [
        (failed[0].period_key, "succeeded")
    ]
    assert store.runs("chiapas")[0].attempts == 2


def test_manual_run_of_unknown_job_names_known_jobs(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    store.add_job(make_spec(tmp_path), NOW)
    with pytest.raises(JobError, match=r"no job named 'other'.*known: chiapas"):
        run_now(store, "other", backend(), lambda: NOW)


def test_a_later_run_confirms_an_earlier_loss_in_the_cumulative_layer(
    tmp_path: Path, shared_data: Path
) -> None:
    """Three runs: the loss of run 2 is unconfirmed until run 3's AFTER map sees it cleared."""
    real = chiapas_scenes(shared_data)
    block_a, block_b = (slice(20, 60), slice(30, 110)), (slice(150, 190), slice(120, 200))
    first = cleared_copy(real[1][2], tmp_path / "first.tif", *block_a)
    second = cleared_copy(first, tmp_path / "second.tif", *block_b)  # block A stays cleared
    everything = [
        *real,
        ("CLEARED_A", "2003-01-15T16:30:00+00:00", first),
        ("CLEARED_AB", "2003-02-15T16:30:00+00:00", second),
    ]
    store = JobStore(tmp_path / "jobs.sqlite")
    store.add_job(make_spec(tmp_path), NOW)
    job_backend = backend()
    clock = iter(NOW + timedelta(days=day) for day in range(100))
    cumulative = tmp_path / "out" / CUMULATIVE_FILE

    def run_with(count: int) -> pd.DataFrame:
        write_scene_list(tmp_path / "scenes.json", everything[:count])
        result = run_now(store, "chiapas", job_backend, lambda: next(clock))
        assert result.status == "succeeded", result.message
        return pyogrio.read_dataframe(cumulative, layer="deforestation")

    run_with(2)
    after_two = run_with(3)
    block_a_loss = after_two[after_two["period_end"] == "2003-01-15"]
    assert len(block_a_loss) > 0
    assert set(block_a_loss["status"]) == {"unconfirmed"}  # nothing seen after it yet
    assert set(block_a_loss["later_dates"]) == {0}

    after_three = run_with(4)
    block_a_loss = after_three[after_three["period_end"] == "2003-01-15"]
    assert set(block_a_loss["status"]) == {"confirmed"}
    assert (block_a_loss["confirmed_share"] == 1.0).all()
    assert set(block_a_loss["later_dates"]) == {1}
    block_b_loss = after_three[after_three["period_end"] == "2003-02-15"]
    assert len(block_b_loss) > 0 and set(block_b_loss["status"]) == {"unconfirmed"}
    # 1999 -> 2002 losses: the next observation (CLEARED_A) is the 2002 scene outside block A,
    # so whatever the NDVI rule lost in 2002 stays lost: confirmed, except inside no block
    seasonal = after_three[after_three["period_end"] == "2002-04-16"]
    assert set(seasonal["later_dates"]) == {2}

    flags = pyogrio.read_dataframe(cumulative, layer="flags")
    season = flags[flags["code"] == "season"]
    assert list(season["period_end"]) == ["2002-04-16", "2003-01-15"]  # Nov->Apr, Apr->Jan
    assert season["message"].str.contains("days apart in the year").all()
