"""``geoseg jobs`` in real processes: concurrent run-due, kill -9 and retry, serve and signals."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from geoseg.jobs.runner import run_due
from geoseg.jobs.spec import JobSpec, validate_mapping
from geoseg.jobs.state import JobStore
from tests.unit.jobs_fakes import backend, chiapas_scenes, cleared_copy, write_scene_list

REPO = Path(__file__).resolve().parents[2]
FAKE_BACKEND = "tests.unit.jobs_fakes:backend"
WAIT_S = 90.0


def make_spec(
    tmp_path: Path, name: str, misfire: str, start: str = "2026-01-01T00:00:00Z"
) -> JobSpec:
    data = {
        "name": name,
        "area": {"bbox": [462405, 1734315, 469905, 1741815], "bbox_crs": "EPSG:32615"},
        "catalog": {"catalog": str(tmp_path / "scenes.json")},
        "schedule": {"interval": "1d", "start": start},
        "output_dir": str(tmp_path / "out" / name),
        "misfire": misfire,
    }
    return validate_mapping(JobSpec, data, "test spec")


def geoseg(db: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "geoseg", "jobs", "--db", str(db), *args, "--backend", FAKE_BACKEND]
        if args[0] != "serve"
        else [sys.executable, "-m", "geoseg", "jobs", "--db", str(db), *args],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = process.communicate(timeout=WAIT_S)
    return process.returncode, output


def wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def tree_hashes(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def chiapas_with_copies(tmp_path: Path, shared_data: Path) -> list[tuple[str, str, Path]]:
    real = chiapas_scenes(shared_data)
    first = cleared_copy(real[1][2], tmp_path / "copy_a.tif", slice(20, 80), slice(20, 120))
    second = cleared_copy(real[1][2], tmp_path / "copy_b.tif", slice(150, 220), slice(130, 240))
    return [
        *real,
        ("COPYA", "2026-01-02T12:00:00+00:00", first),
        ("COPYB", "2026-01-03T12:00:00+00:00", second),
    ]


def test_two_run_due_processes_run_each_period_once(
    tmp_path: Path, chiapas_with_copies: list[tuple[str, str, Path]]
) -> None:
    write_scene_list(tmp_path / "scenes.json", chiapas_with_copies)
    db = tmp_path / "jobs.sqlite"
    store = JobStore(db)
    for name in ("alpha", "beta"):
        store.add_job(make_spec(tmp_path, name, "each"), datetime(2026, 1, 1, tzinfo=UTC))
    log = tmp_path / "runner.log"
    env = {"GEOSEG_FAKE_LOG": str(log)}
    processes = [geoseg(db, "run-due", "--now", "2026-01-04T00:00:00", env=env) for _ in range(2)]
    outcomes = [finish(process) for process in processes]
    assert [code for code, _ in outcomes] == [0, 0], outcomes

    expected_pairs = [
        ("LE70220491999322EDC01", "LE70220492002106EDC00"),
        ("LE70220492002106EDC00", "COPYA"),
        ("COPYA", "COPYB"),
    ]
    for name in ("alpha", "beta"):
        runs = store.runs(name)
        assert [run.period_key for run in runs] == [
            "2026-01-02T00:00:00Z",
            "2026-01-03T00:00:00Z",
            "2026-01-04T00:00:00Z",
        ]
        assert [run.status for run in runs] == ["succeeded"] * 3
        assert [run.attempts for run in runs] == [1, 1, 1]
        assert [(run.before_scene, run.after_scene) for run in runs] == expected_pairs
        assert len(list((tmp_path / "out" / name / "runs").iterdir())) == 3
    calls = log.read_text().splitlines()
    assert sorted(calls) == sorted(f"{before} {after}" for before, after in expected_pairs * 2)
    # a third invocation finds nothing due
    code, output = finish(geoseg(db, "run-due", "--now", "2026-01-04T00:00:00", env=env))
    assert (code, output.strip().splitlines()[-1]) == (0, "nothing due")


def test_kill_9_during_a_run_then_run_due_retries_with_identical_outputs(
    tmp_path: Path, chiapas_with_copies: list[tuple[str, str, Path]]
) -> None:
    write_scene_list(tmp_path / "scenes.json", chiapas_with_copies[:3])
    db = tmp_path / "jobs.sqlite"
    spec = make_spec(tmp_path, "gamma", "once")
    JobStore(db).add_job(spec, datetime(2026, 1, 1, tzinfo=UTC))
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    started = barrier / "started-COPYA"

    victim = geoseg(
        db, "run-due", "--now", "2026-01-03T00:00:00", env={"GEOSEG_FAKE_BARRIER": str(barrier)}
    )
    wait_for(lambda: started.exists() or victim.poll() is not None, "the runner to start")
    assert started.exists(), victim.communicate()[0]
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=WAIT_S)
    assert victim.returncode == -signal.SIGKILL

    store = JobStore(db)
    (dead,) = store.runs("gamma")
    assert (dead.status, dead.attempts) == ("running", 1)
    runs_folder = spec.output_dir / "runs"
    leftovers = sorted(path.name for path in runs_folder.iterdir())
    assert len(leftovers) == 2  # the killed attempt's staging and work folders, no run folder
    assert leftovers[0].endswith(".partial-1") and leftovers[1].endswith(".work")

    code, output = finish(
        geoseg(db, "run-due", "--now", "2026-01-03T01:00:00", "--stale-after", "60")
    )
    assert code == 0, output
    (retried,) = store.runs("gamma")
    assert (retried.status, retried.attempts) == ("succeeded", 2)
    assert (retried.before_scene, retried.after_scene) == ("LE70220491999322EDC01", "COPYA")
    assert all(not path.name.startswith(".") for path in runs_folder.iterdir())
    after_retry = tree_hashes(spec.output_dir)

    # the same job run once without interruption writes byte-identical outputs
    shutil.rmtree(spec.output_dir)
    db.unlink()
    clean_store = JobStore(db)
    clean_store.add_job(spec, datetime(2026, 1, 1, tzinfo=UTC))
    results = run_due(clean_store, backend(), lambda: datetime(2026, 1, 3, tzinfo=UTC))
    assert [result.status for result in results] == ["succeeded"]
    uninterrupted = tree_hashes(spec.output_dir)
    assert sorted(Path(name).name for name in uninterrupted) == [
        "after_classes.tif",
        "change_stats.csv",
        "deforestation.gpkg",
        "flags.csv",
        "forest_loss.gpkg",
        "loss.tif",
        "loss_by_region.csv",
        "report.html",
        "run.json",
    ]
    assert after_retry == uninterrupted


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_runs_due_jobs_and_exits_cleanly_on_a_signal(
    tmp_path: Path, chiapas_with_copies: list[tuple[str, str, Path]], stop_signal: signal.Signals
) -> None:
    write_scene_list(tmp_path / "scenes.json", chiapas_with_copies[:2])
    db = tmp_path / "jobs.sqlite"
    store = JobStore(db)
    store.add_job(make_spec(tmp_path, "delta", "once"), datetime(2026, 1, 1, tzinfo=UTC))
    server = geoseg(
        db,
        "serve",
        "--poll",
        "0.2",
        "--backend",
        FAKE_BACKEND,
        env={"GEOSEG_JOBS_BACKEND": FAKE_BACKEND},
    )
    try:
        wait_for(
            lambda: (
                [run.status for run in store.runs("delta")] == ["succeeded"]
                or server.poll() is not None
            ),
            "serve to run the due period",
        )
        server.send_signal(stop_signal)
        code, output = finish(server)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert code == 0, output
    assert "scheduler stopped" in output
    assert [run.status for run in store.runs("delta")] == ["succeeded"]
