"""What a change run writes: its own folder (published whole), and the cumulative layers.

:func:`produce_run_folder` lets the change runner write into a staging folder,
adds the tagged polygons, the per-region table, the HTML report and a manifest
with every file's SHA-256, then renames the folder into place.
:func:`rebuild_cumulative` rebuilds ``forest_loss.gpkg`` (all polygons with
their period and status, the per-region loss time series, and every run's
quality flags) from every run folder: each run's losses are confirmed or not
by the AFTER class maps of the runs after it (:mod:`geoseg.jobs.confirm`).
Everything written is a function of the scene pair, the model and the spec.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from geoseg.io.checksums import sha256_file
from geoseg.io.jobs import (
    read_run_flags,
    read_run_tables,
    write_cumulative,
    write_run_flags,
    write_run_tables,
)
from geoseg.io.report import write_html
from geoseg.io.staging import (
    publish_folder,
    read_json,
    remove_tree,
    staging_folder,
    work_folder,
    write_json,
)
from geoseg.jobs.confirm import with_status
from geoseg.jobs.history import (
    check_regions,
    cumulative_flags,
    cumulative_polygons,
    cumulative_timeseries,
    run_folder_name,
    tag_flags,
    tag_polygons,
    tag_regions,
)
from geoseg.jobs.interfaces import JobBackend, SceneRef
from geoseg.jobs.spec import JobSpec, as_utc
from geoseg.jobs.state import JobStore
from geoseg.report.html import ReportInputs, build_report

MANIFEST_FILE = "run.json"
REPORT_FILE = "report.html"
CUMULATIVE_FILE = "forest_loss.gpkg"
RUNS_FOLDER = "runs"


def run_folder(spec: JobSpec, before: SceneRef, after: SceneRef, model_hash: str) -> Path:
    """Where the run of this scene pair is published (never reused by another pair)."""
    return (
        spec.output_dir / RUNS_FOLDER / run_folder_name(before, after, model_hash, spec.spec_hash())
    )


def _work_path(final: Path) -> Path:
    """The work folder kept across attempts of the run published at ``final``."""
    return final.parent / f".{final.name}.work"


def is_published(folder: Path) -> bool:
    """True when a run folder is complete (its manifest is written last)."""
    return (folder / MANIFEST_FILE).exists()


def _manifest(
    spec: JobSpec,
    before: SceneRef,
    after: SceneRef,
    model_hash: str,
    folder: Path,
    after_classes: Path | None,
) -> dict[str, object]:
    files = sorted(
        path for path in folder.rglob("*") if path.is_file() and path.name != MANIFEST_FILE
    )
    return {
        "job": spec.name,
        "spec_hash": spec.spec_hash(),
        "model": spec.model,
        "model_hash": model_hash,
        "before": {"id": before.id, "datetime": as_utc(before.datetime).isoformat()},
        "after": {"id": after.id, "datetime": as_utc(after.datetime).isoformat()},
        "after_classes": None
        if after_classes is None
        else after_classes.relative_to(folder).as_posix(),
        "files": {path.relative_to(folder).as_posix(): sha256_file(path) for path in files},
    }


def produce_run_folder(
    spec: JobSpec,
    store: JobStore,
    backend: JobBackend,
    attempt: int,
    before: SceneRef,
    after: SceneRef,
    model_hash: str,
    final: Path,
) -> None:
    """Run change for ``before`` -> ``after`` and publish the run folder ``final``.

    The runner writes into ``change/`` of a staging folder (attempt number
    ``attempt``) and may keep resumable work in the run's work folder; the
    staging folder is renamed to ``final`` once complete and the work folder
    is then removed.
    """
    work = work_folder(_work_path(final))
    staging = staging_folder(final, attempt)
    change_dir = staging / "change"
    change_dir.mkdir()
    outputs = backend.runner.run(before, after, spec.area, spec.model, change_dir, work)
    regions = check_regions(outputs.regions, f"job {spec.name}")
    polygons = tag_polygons(outputs.polygons, before, after)
    tagged = tag_regions(regions, before, after)
    write_run_tables(staging, polygons, tagged, timestamp=as_utc(after.datetime))
    write_run_flags(staging, tag_flags(outputs.flags, before, after))
    timeseries = cumulative_timeseries([*_earlier_tables(store, spec.name, final), tagged])
    report = build_report(
        ReportInputs(
            title=f"geoseg job {spec.name}: forest loss "
            f"{as_utc(before.datetime):%Y-%m-%d} to {as_utc(after.datetime):%Y-%m-%d}",
            facts={
                "before scene": f"{before.id} ({as_utc(before.datetime):%Y-%m-%d %H:%M} UTC)",
                "after scene": f"{after.id} ({as_utc(after.datetime):%Y-%m-%d %H:%M} UTC)",
                "model": f"{spec.model} (sha256 {model_hash[:16]})",
                "job spec": f"sha256 {spec.spec_hash()[:16]}",
                "total forest loss": f"{float(regions['forest_loss_ha'].sum()):,.2f} ha",
            },
            regions=regions,
            polygons=polygons,
            quicklook=outputs.quicklook,
            timeseries=timeseries,
            flags=outputs.flags,
            masked=outputs.masked,
        )
    )
    write_html(staging / REPORT_FILE, report)
    write_json(
        staging / MANIFEST_FILE,
        _manifest(spec, before, after, model_hash, staging, outputs.after_classes),
    )
    publish_folder(staging, final)
    remove_tree(work)


def _earlier_tables(store: JobStore, job: str, exclude: Path) -> list[pd.DataFrame]:
    tables: list[pd.DataFrame] = []
    for run in store.succeeded_runs(job):
        if run.output_dir is None or Path(run.output_dir) == exclude:
            continue
        _, regions = read_run_tables(Path(run.output_dir))
        tables.append(regions)
    return tables


def after_classes(folder: Path) -> Path | None:
    """The AFTER class map a published run folder recorded (None when it kept none)."""
    manifest = read_json(folder / MANIFEST_FILE) or {}
    relative = manifest.get("after_classes")
    return None if not relative else folder / str(relative)


def rebuild_cumulative(spec: JobSpec, store: JobStore, newest: Path) -> Path:
    """Rewrite the job's ``forest_loss.gpkg`` from its succeeded runs and ``newest``.

    Runs are taken in the order of their AFTER scenes; each run's loss polygons
    get ``status`` (``confirmed`` / ``unconfirmed``), ``confirmed_share`` and
    ``later_dates`` from the AFTER class maps of the runs after it.
    """
    folders = [Path(run.output_dir) for run in store.succeeded_runs(spec.name) if run.output_dir]
    if newest not in folders:
        folders.append(newest)
    maps = [after_classes(folder) for folder in folders]
    polygon_parts, region_parts, flag_parts = [], [], []
    for number, folder in enumerate(folders):
        polygons, regions = read_run_tables(folder)
        later = [path for path in maps[number + 1 :] if path is not None]
        polygon_parts.append(with_status(polygons, later))
        region_parts.append(regions)
        flag_parts.append(read_run_flags(folder))
    timeseries = cumulative_timeseries(region_parts)
    latest = max(str(value) for value in timeseries["period_end"]) if len(timeseries) else ""
    stamp = datetime.fromisoformat(latest).replace(tzinfo=UTC) if latest else datetime(1970, 1, 1)
    path = spec.output_dir / CUMULATIVE_FILE
    write_cumulative(
        path, cumulative_polygons(polygon_parts), timeseries, cumulative_flags(flag_parts), stamp
    )
    return path
