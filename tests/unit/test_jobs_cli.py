"""``geoseg jobs add / list / run / run-due / history`` through the command line (in-process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoseg.cli import main
from tests.unit.jobs_fakes import chiapas_scenes, write_scene_list

FAKE_BACKEND = "tests.unit.jobs_fakes:backend"

SPEC = """\
name: chiapas
area:
  bbox: [462405, 1734315, 469905, 1741815]
  bbox_crs: EPSG:32615
catalog:
  catalog: scenes.json
schedule:
  cron: "0 6 * * *"
  start: 2026-01-01T00:00:00Z
output_dir: out
misfire: once
"""


def geoseg(db: Path, *args: str) -> None:
    main(["jobs", "--db", str(db), *args])


def test_add_list_run_due_history(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_scene_list(tmp_path / "scenes.json", chiapas_scenes(shared_data))
    spec_file = tmp_path / "chiapas.yaml"
    spec_file.write_text(SPEC, encoding="utf-8")
    db = tmp_path / "state" / "jobs.sqlite"

    geoseg(db, "list")
    assert "no jobs in" in capsys.readouterr().out
    geoseg(db, "add", str(spec_file))
    assert "added job chiapas" in capsys.readouterr().out
    geoseg(db, "add", str(spec_file))
    assert "updated job chiapas" in capsys.readouterr().out
    geoseg(db, "list")
    listing = capsys.readouterr().out
    assert "chiapas: cron '0 6 * * *' UTC, misfire once" in listing
    assert "never run" in listing
    assert "; next: " in listing

    geoseg(db, "run-due", "--backend", FAKE_BACKEND, "--now", "2026-01-03T07:00:00")
    output = capsys.readouterr().out
    assert "chiapas [2026-01-03T06:00:00Z] succeeded: change LE70220491999322EDC01 ->" in output
    geoseg(db, "run-due", "--backend", FAKE_BACKEND, "--now", "2026-01-03T07:00:00")
    assert capsys.readouterr().out.strip() == "nothing due"
    geoseg(db, "run", "chiapas", "--backend", FAKE_BACKEND, "--now", "2026-01-03T08:00:00")
    assert "no_new_data: no new scene after LE70220492002106EDC00" in capsys.readouterr().out

    geoseg(db, "history", "chiapas")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert "2026-01-03T06:00:00Z schedule succeeded attempts=1" in lines[0]
    assert str(tmp_path / "out" / "runs") in lines[0]
    assert "manual no_new_data attempts=1" in lines[1]
    assert (tmp_path / "out" / "forest_loss.gpkg").exists()


def test_errors_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "jobs.sqlite"
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.replace("misfire: once", "misfire: once\nretries: 3"), encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        geoseg(db, "add", str(bad))
    assert exited.value.code == 2  # bad input
    error = capsys.readouterr().err
    assert f"{bad}: invalid configuration" in error
    assert "retries: Extra inputs are not permitted" in error
    assert "Traceback" not in error

    with pytest.raises(SystemExit):
        geoseg(db, "history", "nothing")
    assert "no job named 'nothing'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        geoseg(db, "run-due", "--backend", "no_such_module:backend")
    assert "cannot load the jobs backend 'no_such_module:backend'" in capsys.readouterr().err
