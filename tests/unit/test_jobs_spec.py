from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from geoseg.errors import ConfigError, GeosegError
from geoseg.jobs.spec import JobSpec, load_job_spec

VALID = """\
name: chiapas-forest
area:
  bbox: [462405, 1734315, 469905, 1741815]
  bbox_crs: EPSG:32615
catalog:
  collection: landsat
  start: 1999-01-01
model: forest-landsat
schedule:
  cron: "0 6 * * *"
output_dir: out
misfire: each
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_spec_resolves_paths_and_hashes_stably(tmp_path: Path) -> None:
    spec = load_job_spec(write(tmp_path, VALID))
    assert spec.name == "chiapas-forest"
    assert spec.output_dir == tmp_path / "out"
    assert spec.schedule.cron == "0 6 * * *"
    assert spec.misfire == "each"
    reordered = VALID.replace("misfire: each\n", "").replace("name:", "misfire: each\nname:")
    assert load_job_spec(write(tmp_path, reordered)).spec_hash() == spec.spec_hash()
    changed = VALID.replace("0 6 * * *", "0 7 * * *")
    assert load_job_spec(write(tmp_path, changed)).spec_hash() != spec.spec_hash()


@pytest.mark.parametrize(
    ("text", "interval"),
    [("6h", timedelta(hours=6)), ("30m", timedelta(minutes=30)), ("2w", timedelta(weeks=2))],
)
def test_interval_forms(tmp_path: Path, text: str, interval: timedelta) -> None:
    spec_text = VALID.replace('cron: "0 6 * * *"', f"interval: {text}")
    assert load_job_spec(write(tmp_path, spec_text)).schedule.interval == interval


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("misfire: each", "misfire: each\ncolour: red"), "colour: Extra inputs are not permitted"),
        (("0 6 * * *", "61 6 * * *"), "not a valid cron expression"),
        (("0 6 * * *", "every day"), "not a valid cron expression"),
        (
            ("  bbox: [462405, 1734315, 469905, 1741815]\n  bbox_crs: EPSG:32615\n", "  {}\n"),
            "give the area as 'bbox",
        ),
        (
            ("[462405, 1734315, 469905, 1741815]", "[469905, 1734315, 462405, 1741815]"),
            "minx must be less than maxx",
        ),
        (("EPSG:32615", "EPSG:999999"), "unknown CRS 'EPSG:999999'"),
        (("[462405, 1734315, 469905, 1741815]", "[.nan, 0, 1, 1]"), "finite number"),
        (("misfire: each", "misfire: sometimes"), "misfire: Input should be 'once' or 'each'"),
        (('cron: "0 6 * * *"', 'cron: "0 6 * * *"\n  interval: 6h'), "exactly one of"),
        (("name: chiapas-forest", "name: ../escape"), "job name '../escape'"),
        (("catalog:\n", "catalog:\n  max_cloud_cover: 20\n"), "max_cloud_cover: Extra inputs"),
        (("model: forest-landsat\n", ""), None),
    ],
)
def test_bad_specs_name_the_problem(
    tmp_path: Path, change: tuple[str, str], expected: str | None
) -> None:
    text = VALID.replace(*change)
    assert text != VALID
    path = write(tmp_path, text)
    if expected is None:
        assert load_job_spec(path).model == JobSpec.model_fields["model"].default
        return
    with pytest.raises(ConfigError) as caught:
        load_job_spec(path)
    message = str(caught.value)
    assert str(path) in message
    assert expected in message


def test_missing_output_dir_and_schedule_are_reported(tmp_path: Path) -> None:
    text = "name: x\narea:\n  bbox: [0, 0, 1, 1]\n"
    with pytest.raises(ConfigError) as caught:
        load_job_spec(write(tmp_path, text))
    assert "schedule: Field required" in str(caught.value)
    assert "output_dir: Field required" in str(caught.value)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(GeosegError, match="config file not found"):
        load_job_spec(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_job_spec(write(tmp_path, "name: [unclosed"))


def test_bbox_crossing_the_antimeridian_is_accepted(tmp_path: Path) -> None:
    text = VALID.replace("[462405, 1734315, 469905, 1741815]", "[170, -10, -170, 10]").replace(
        "EPSG:32615", "EPSG:4326"
    )
    bbox = load_job_spec(write(tmp_path, text)).area.validated_bbox()
    assert bbox is not None and bbox.crosses_antimeridian
