"""``geoseg run`` and ``geoseg run-change``: the main job, wiring only.

``run_bbox``: catalog search over a bbox -> scenes verified by checksum ->
one target grid (:mod:`geoseg.catalog.mosaic`) -> chunked inference on Dask
(:func:`workflows.predict.predict_source`) -> seam-free polygons
(:func:`workflows.vectorize.vectorize_file`) -> GeoPackage with the class
polygons, the per-class area table and the run manifest; plus the label COG,
a quicklook PNG and the manifest JSON.

``run_change``: the scenes of two dates on one grid through one model, then
the change statistics of :func:`workflows.change.change_file`.

Resumable and atomic: everything is staged in ``<out>.geoseg-work/<run id>/``
(the run id hashes inputs, model and parameters) and published to the final
paths only when complete. A run killed at any point and started again with the
same arguments reuses the finished prediction chunks (and finished label
rasters) and writes byte-identical outputs: the run's time is fixed at its
first attempt (or by ``SOURCE_DATE_EPOCH``) and every GeoPackage records it as
its change time.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from distributed import Client

from geoseg.bbox import BBox
from geoseg.catalog.mosaic import MosaicSource, coarser_grid, mosaic_source, target_grid
from geoseg.catalog.stac import SceneEntry, region_file, search, verify_entry
from geoseg.errors import OutputError
from geoseg.grid import RasterGrid
from geoseg.io.checkpoint import read_card
from geoseg.io.runs import (
    fixed_file_dates,
    pin_style_times,
    publish,
    read_json,
    read_labels_preview,
    remove_file,
    remove_tree,
    save_png,
    write_attribute_table,
    write_json,
)
from geoseg.io.vector import read_vector
from geoseg.models.card import ModelCard
from geoseg.models.loading import resolve_model_dir
from geoseg.predict.placement import InferencePlacement
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from geoseg.report.manifest import (
    InputFile,
    ModelInfo,
    RunManifest,
    provenance_rows,
    run_id,
    run_time,
    software_versions,
)
from geoseg.report.quicklook import LegendClass, quicklook_figure, stretch_rgb
from geoseg.report.summary import class_area_table
from workflows.change import change_file
from workflows.cluster import dask_client, inference_placement
from workflows.predict import predict_source
from workflows.vectorize import vectorize_file

CLASS_LAYER = "classes"
AREA_TABLE = "class_areas"
MANIFEST_TABLE = "run_manifest"
QUICKLOOK_SIDE = 640
QUICKLOOK_DPI = 90
WORK_SUFFIX = ".geoseg-work"

Report = Callable[[str], None]


@dataclass(frozen=True)
class RunOutputs:
    """What a run wrote, and how much of it was reused from an earlier attempt."""

    geopackage: Path
    labels: tuple[Path, ...]
    quicklook: Path | None
    manifest: Path
    run_id: str
    grid: RasterGrid
    scenes: tuple[str, ...]
    chunks_computed: int
    chunks_reused: int
    seconds: float


@dataclass
class _Run:
    """The staging area of one run: work folder, state file, timings."""

    work: Path
    state: dict[str, Any]
    timings: dict[str, float]
    computed: int = 0
    reused: int = 0

    @property
    def started(self) -> str:
        return str(self.state["started"])

    def save(self) -> None:
        write_json(self.work / "state.json", self.state)


def _quiet(message: str) -> None:
    """Discard a progress message."""


@contextlib.contextmanager
def _client(client: Client | None, scheduler: str | None) -> Iterator[Client]:
    if client is not None:
        yield client
        return
    with dask_client(scheduler) as started:
        yield started


def _check_outputs(paths: Sequence[Path]) -> None:
    if len({path.resolve() for path in paths}) != len(paths):
        raise OutputError(f"{paths[0]}: the output paths must all differ")
    for path in paths:
        if not path.parent.is_dir():
            raise OutputError(f"{path}: the output directory {path.parent} does not exist")


def _model_info(model: str | Path, card: ModelCard) -> ModelInfo:
    return ModelInfo(
        name=card.name if Path(model).exists() else str(model),
        weights_sha256=card.weights_sha256,
        architecture=f"{card.architecture}/{card.encoder}".rstrip("/"),
        classes={str(spec.id): spec.name for spec in card.classes},
    )


def _inputs(scenes: Sequence[SceneEntry]) -> list[InputFile]:
    return [
        InputFile(id=entry.id, href=entry.data.href, sha256=entry.data.sha256 or "")
        for entry in scenes
    ]


def _scene_source(grid: RasterGrid, scenes: Sequence[SceneEntry], card: ModelCard) -> MosaicSource:
    """The scenes (checksums verified) as one mosaic on ``grid`` with the card's bands."""
    pairs = [(entry, verify_entry(entry)) for entry in scenes]
    return mosaic_source(grid, pairs, card.band_names)


def _start(out: Path, key: dict[str, Any]) -> tuple[str, _Run]:
    """The run id and its staging area (state reused from an earlier attempt)."""
    identifier = run_id(key)
    work = Path(str(out) + WORK_SUFFIX) / identifier[:16]
    work.mkdir(parents=True, exist_ok=True)
    state = read_json(work / "state.json") or {"started": run_time(os.environ, datetime.now(UTC))}
    run = _Run(work, state, {})
    run.save()
    return identifier, run


def _predict(
    run: _Run,
    name: str,
    source: MosaicSource,
    model: str | Path,
    settings: InferenceSettings,
    placement: InferencePlacement,
    client: Client,
    progress: bool,
) -> Path:
    """Labels of ``source`` staged as ``<name>.tif``; skipped when an attempt finished it.

    The model runs where ``placement`` says: the placement the manifest records.
    """
    staged = run.work / f"{name}.tif"
    if run.state.get(f"{name}_done") and staged.exists():
        return staged
    result = predict_source(
        source,
        model,
        settings,
        PredictOutputs(staged),
        client=client,
        work_dir=run.work / f"{name}-chunks",
        progress=progress,
        placement=placement,
    )
    run.computed += result.chunks_computed
    run.reused += result.chunks_reused
    run.state[f"{name}_done"] = True
    run.save()
    return staged


def _manifest(
    command: str,
    identifier: str,
    run: _Run,
    scenes: Sequence[SceneEntry],
    model: ModelInfo,
    parameters: dict[str, Any],
    grid: dict[str, Any],
    outputs: dict[str, Path],
) -> RunManifest:
    return RunManifest(
        command=command,
        run_id=identifier,
        started=run.started,
        inputs=_inputs(scenes),
        model=model,
        parameters=parameters,
        grid=grid,
        versions=software_versions(),
        outputs={name: path.name for name, path in outputs.items()},
    )


def _quicklook(
    source: MosaicSource,
    scenes: Sequence[SceneEntry],
    labels: Path,
    card: ModelCard,
    path: Path,
) -> None:
    preview = coarser_grid(source.grid, QUICKLOOK_SIDE)
    colour = source.with_bands(scenes, ["red", "green", "blue"]).on_grid(preview)
    values, valid = colour.read(preview.full_window)
    classes, _ = read_labels_preview(labels, preview.shape)
    legend = [LegendClass(spec.id, spec.name, spec.rgb) for spec in card.classes]
    dates = ", ".join(entry.start.date().isoformat() for entry in scenes)
    figure = quicklook_figure(
        stretch_rgb(values, valid),
        classes,
        legend,
        title=f"{card.name} over {', '.join(entry.id for entry in scenes)} ({dates})",
        caption=(
            "Imagery: Landsat (USGS, public domain). Classes: geoseg model "
            f"{card.name}. {card.attribution}".strip()
        ),
    )
    save_png(figure, path, dpi=QUICKLOOK_DPI)


def _finish(
    run: _Run,
    out: Path,
    publications: Sequence[tuple[Path, Path]],
    manifest: RunManifest,
    manifest_path: Path,
    started_clock: float,
) -> None:
    """Publish staged files, write the manifest JSON (with timings), drop the work folder."""
    run.timings["total_s"] = time.perf_counter() - started_clock
    for staged, final in publications:
        publish(staged, final)
    write_json(
        manifest_path,
        manifest.model_copy(update={"timings_s": run.timings}).model_dump(mode="json"),
    )
    remove_tree(Path(str(out) + WORK_SUFFIX))


def default_paths(out: Path) -> tuple[Path, Path, Path]:
    """Label COG, quicklook PNG and manifest JSON beside ``out`` (same stem)."""
    return (
        out.with_suffix(".tif"),
        out.with_suffix(".png"),
        out.with_name(out.stem + ".manifest.json"),
    )


def run_bbox(
    bbox: BBox,
    datetime_range: str | None,
    *,
    out: Path,
    model: str | Path = "landcover-landsat",
    labels_out: Path | None = None,
    quicklook_out: Path | None = None,
    catalog: str | Path | None = None,
    crs: str | None = None,
    resolution: float | None = None,
    settings: InferenceSettings | None = None,
    progress: bool = True,
    scheduler: str | None = None,
    client: Client | None = None,
    report: Report = _quiet,
) -> RunOutputs:
    """Segment the scenes over ``bbox`` in ``datetime_range`` and export the results.

    Parameters
    ----------
    bbox
        The area (any CRS); partly outside the scenes is clipped with a warning.
    datetime_range
        ``DATE`` or ``START/END`` (see :func:`geoseg.catalog.stac.parse_datetime_range`).
    out
        The GeoPackage: layer ``classes`` (polygons), tables ``class_areas`` and
        ``run_manifest``.
    model
        Shipped model name or model directory.
    labels_out, quicklook_out
        Label COG and quicklook PNG; default beside ``out`` with its stem.
    catalog
        Static catalog path or STAC API URL; default the embedded catalog.
    crs, resolution
        Target grid; default the scenes' CRS and resolution.
    settings
        Inference settings (see :func:`workflows.predict.predict_source`).
    progress
        Show progress bars.
    scheduler, client
        Where to run: an existing client, a scheduler address, or (default)
        ``$DASK_SCHEDULER_ADDRESS`` or a local cluster.
    report
        Called with one line per stage.
    """
    started_clock = time.perf_counter()
    settings = settings or InferenceSettings()
    out = Path(out)
    default_labels, default_quicklook, manifest_path = default_paths(out)
    labels_path = Path(labels_out) if labels_out else default_labels
    quicklook_path = Path(quicklook_out) if quicklook_out else default_quicklook
    _check_outputs([out, labels_path, quicklook_path, manifest_path])

    clock = time.perf_counter()
    scenes = search(bbox, datetime_range, location=catalog)
    card = read_card(resolve_model_dir(model))
    grid = target_grid(bbox, scenes, crs=crs, resolution=resolution)
    source = _scene_source(grid, scenes, card)
    report(
        f"scenes: {', '.join(entry.id for entry in scenes)}; grid {grid.height}x{grid.width} "
        f"px in {grid.crs.to_string()}"
    )
    model_info = _model_info(model, card)
    placement = inference_placement(
        client,
        settings.device,
        scheduler,
        precision=settings.precision,
        cpu_bf16_agreement=card.cpu_bf16_agreement,
    )
    parameters = {
        "bbox": list(bbox.bounds),
        "bbox_crs": bbox.crs.to_string(),
        "datetime": datetime_range,
        **settings.output_parameters(placement),
    }
    fingerprint = source.fingerprint()
    key = {"command": "run", "source": fingerprint, "model": model_info.model_dump()}
    identifier, run = _start(out, {**key, "parameters": parameters})
    run.timings["search_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    with _client(client, scheduler) as active:
        staged_labels = _predict(
            run, "labels", source, model, settings, placement, active, progress
        )
        run.timings["predict_s"] = time.perf_counter() - clock
        report(f"predicted: {run.computed} chunks computed, {run.reused} reused")

        clock = time.perf_counter()
        manifest = _manifest(
            "run",
            identifier,
            run,
            scenes,
            model_info,
            parameters,
            fingerprint,
            {"geopackage": out, "labels": labels_path, "quicklook": quicklook_path},
        )
        staged_gpkg = run.work / "out.gpkg"
        remove_file(staged_gpkg)
        with fixed_file_dates(run.started):
            vectorize_file(
                staged_labels,
                staged_gpkg,
                layer=CLASS_LAYER,
                client=active,
                provenance={
                    "source": ",".join(entry.id for entry in scenes),
                    "model": f"{model_info.name}@{card.weights_sha256[:12]}",
                    "run_time": run.started,
                },
            )
            polygons = read_vector(staged_gpkg, layer=CLASS_LAYER)
            areas = class_area_table(
                polygons["class_id"].to_numpy(),
                polygons["area_m2"].to_numpy(),
                {spec.id: spec.name for spec in card.classes},
            )
            write_attribute_table(staged_gpkg, AREA_TABLE, areas)
            write_attribute_table(
                staged_gpkg, MANIFEST_TABLE, pd.DataFrame(provenance_rows(manifest))
            )
        pin_style_times(staged_gpkg, run.started)
        run.timings["vectorize_s"] = time.perf_counter() - clock
        report(f"vectorized: {len(polygons)} polygons")

    clock = time.perf_counter()
    staged_quicklook = run.work / "quicklook.png"
    _quicklook(source, scenes, staged_labels, card, staged_quicklook)
    run.timings["quicklook_s"] = time.perf_counter() - clock

    publications = [
        (staged_labels, labels_path),
        (staged_quicklook, quicklook_path),
        (staged_gpkg, out),
    ]
    _finish(run, out, publications, manifest, manifest_path, started_clock)
    for path in (out, labels_path, quicklook_path, manifest_path):
        report(f"wrote {path}")
    return RunOutputs(
        geopackage=out,
        labels=(labels_path,),
        quicklook=quicklook_path,
        manifest=manifest_path,
        run_id=identifier,
        grid=grid,
        scenes=tuple(entry.id for entry in scenes),
        chunks_computed=run.computed,
        chunks_reused=run.reused,
        seconds=run.timings["total_s"],
    )


def _forest_ids(card: ModelCard) -> list[int]:
    """Ids of the card's classes named ``forest...`` (not ``non-forest``)."""
    return [spec.id for spec in card.classes if spec.name.lower().startswith("forest")]


def run_change(
    bbox: BBox,
    before: str,
    after: str,
    *,
    regions: str | Path,
    out: Path,
    region_layer: str | None = None,
    region_id_field: str | None = None,
    stats: Path | None = None,
    model: str | Path = "forest-landsat",
    catalog: str | Path | None = None,
    crs: str | None = None,
    resolution: float | None = None,
    settings: InferenceSettings | None = None,
    progress: bool = True,
    scheduler: str | None = None,
    client: Client | None = None,
    report: Report = _quiet,
) -> RunOutputs:
    """Segment the scenes of two dates on one grid with one model, then compare them.

    Parameters
    ----------
    bbox
        The area (any CRS).
    before, after
        ``DATE`` or ``START/END`` of each date's scenes.
    regions
        Regions file, or the id of a region item of the catalog (e.g. ``rondonia``).
    out
        The change GeoPackage (layers of :func:`workflows.change.change_file`
        plus the ``run_manifest`` table); the two label COGs go beside it as
        ``<stem>.before.tif`` and ``<stem>.after.tif``.
    region_layer, region_id_field, stats
        As for :func:`workflows.change.change_file`.
    model
        Shipped model name or model directory; its classes named ``forest...``
        count as forest.
    catalog, crs, resolution, settings, progress, scheduler, client, report
        As for :func:`run_bbox`.
    """
    started_clock = time.perf_counter()
    settings = settings or InferenceSettings()
    out = Path(out)
    before_path, after_path = out.with_suffix(".before.tif"), out.with_suffix(".after.tif")
    manifest_path = out.with_name(out.stem + ".manifest.json")
    _check_outputs([out, before_path, after_path, manifest_path])
    regions_path = region_file(regions, location=None if catalog is None else catalog)

    clock = time.perf_counter()
    before_scenes = search(bbox, before, location=catalog)
    after_scenes = search(bbox, after, location=catalog)
    card = read_card(resolve_model_dir(model))
    grid = target_grid(bbox, [*before_scenes, *after_scenes], crs=crs, resolution=resolution)
    sources = {
        "before": _scene_source(grid, before_scenes, card),
        "after": _scene_source(grid, after_scenes, card),
    }
    report(
        f"before: {', '.join(e.id for e in before_scenes)}; after: "
        f"{', '.join(e.id for e in after_scenes)}; grid {grid.height}x{grid.width} px"
    )
    model_info = _model_info(model, card)
    placement = inference_placement(
        client,
        settings.device,
        scheduler,
        precision=settings.precision,
        cpu_bf16_agreement=card.cpu_bf16_agreement,
    )
    parameters = {
        "bbox": list(bbox.bounds),
        "bbox_crs": bbox.crs.to_string(),
        "before": before,
        "after": after,
        "regions": regions_path.name,
        "region_layer": region_layer,
        "region_id_field": region_id_field,
        "forest_classes": _forest_ids(card),
        **settings.output_parameters(placement),
    }
    fingerprints = {name: source.fingerprint() for name, source in sources.items()}
    key = {
        "command": "run-change",
        "sources": fingerprints,
        "model": model_info.model_dump(),
    }
    identifier, run = _start(out, {**key, "parameters": parameters})
    run.timings["search_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    with _client(client, scheduler) as active:
        staged = {
            name: _predict(run, name, source, model, settings, placement, active, progress)
            for name, source in sources.items()
        }
        run.timings["predict_s"] = time.perf_counter() - clock
        report(f"predicted: {run.computed} chunks computed, {run.reused} reused")

        clock = time.perf_counter()
        staged_gpkg = run.work / "change.gpkg"
        remove_file(staged_gpkg)
        staged_stats = run.work / f"stats{stats.suffix}" if stats is not None else None
        manifest = _manifest(
            "run-change",
            identifier,
            run,
            [*before_scenes, *after_scenes],
            model_info,
            parameters,
            fingerprints,
            {"geopackage": out, "labels_before": before_path, "labels_after": after_path},
        )
        with fixed_file_dates(run.started):
            change_file(
                staged["before"],
                staged["after"],
                regions_path,
                staged_gpkg,
                region_layer=region_layer,
                region_id_field=region_id_field,
                stats=staged_stats,
                forest_classes=_forest_ids(card) or None,
                client=active,
                provenance={"run_time": run.started},
            )
            write_attribute_table(
                staged_gpkg, MANIFEST_TABLE, pd.DataFrame(provenance_rows(manifest))
            )
        pin_style_times(staged_gpkg, run.started)
        run.timings["change_s"] = time.perf_counter() - clock

    publications = [
        (staged["before"], before_path),
        (staged["after"], after_path),
        (staged_gpkg, out),
    ]
    if stats is not None and staged_stats is not None:
        stats = Path(stats)
        for kind in ("", ".transitions", ".regions"):
            name = f"{staged_stats.stem}{kind}{staged_stats.suffix}"
            publications.append(
                (staged_stats.with_name(name), stats.with_name(f"{stats.stem}{kind}{stats.suffix}"))
            )
    _finish(run, out, publications, manifest, manifest_path, started_clock)
    for _, path in publications:
        report(f"wrote {path}")
    report(f"wrote {manifest_path}")
    return RunOutputs(
        geopackage=out,
        labels=(before_path, after_path),
        quicklook=None,
        manifest=manifest_path,
        run_id=identifier,
        grid=grid,
        scenes=tuple(entry.id for entry in [*before_scenes, *after_scenes]),
        chunks_computed=run.computed,
        chunks_reused=run.reused,
        seconds=run.timings["total_s"],
    )
