"""The staging area of ``geoseg run`` and ``geoseg run-change``: wiring only.

Resumable and atomic: everything is staged in ``<out>.geoseg-work/<run id>/``
(the run id hashes inputs, model and parameters) and published to the final
paths only when complete (:mod:`geoseg.io.staging`). A run killed at any point
and started again with the same arguments reuses the finished prediction
chunks (and finished label rasters) and writes byte-identical outputs: the
run's time is fixed at its first attempt (or given by the caller, or by
``SOURCE_DATE_EPOCH``) in the work folder's ``state.json``, and every
GeoPackage records it as its change time.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from distributed import Client

from geoseg.catalog.mosaic import MosaicSource, mosaic_source
from geoseg.catalog.stac import SceneEntry, verify_entry
from geoseg.change.flags import Flag
from geoseg.errors import CatalogError, ConfigError
from geoseg.grid import RasterGrid
from geoseg.io.checkpoint import read_card
from geoseg.io.raster import read_info
from geoseg.io.runs import write_attribute_table
from geoseg.io.stac import write_output_item
from geoseg.io.staging import publish_file, read_json, remove_tree, work_folder, write_json
from geoseg.limits import DEFAULT_MASK_BUFFER, check_pixel_budget
from geoseg.models.card import ModelCard
from geoseg.models.loading import alias_notice, model_name, resolve_model_dir
from geoseg.predict.instances import InstanceSettings
from geoseg.predict.pixel_size import PixelSizeCheck, check_pixel_size
from geoseg.predict.placement import InferencePlacement
from geoseg.predict.resampling import resampling_for
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from geoseg.report.manifest import (
    InputFile,
    ModelInfo,
    RunManifest,
    SceneQuality,
    provenance_rows,
    run_id,
    software_versions,
)
from geoseg.report.manifest import run_time as resolve_run_time
from geoseg.report.stac import OutputAsset, card_classes
from workflows.cluster import dask_client, model_placement
from workflows.predict import predict_source
from workflows.predict_instances import detector_settings, predict_instances_source

MANIFEST_TABLE = "run_manifest"
DOMAIN_SUFFIX = "_domain"
"""State key suffix of a staged scene's out-of-domain findings."""
WORK_SUFFIX = ".geoseg-work"

Report = Callable[[str], None]


def quiet(message: str) -> None:
    """Discard a progress message."""


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
    flags: tuple[Flag, ...] = ()
    """Quality flags of a change run (:mod:`geoseg.change.flags`), the run's first."""


@dataclass
class RunStaging:
    """The staging area of one run: work folder, state file, timings."""

    work: Path
    state: dict[str, Any]
    timings: dict[str, float]
    computed: int = 0
    reused: int = 0

    @property
    def started(self) -> str:
        """The run's time (ISO 8601, UTC), fixed at its first attempt."""
        return str(self.state["started"])

    @property
    def quality(self) -> list[SceneQuality]:
        """The scenes' masked shares, of every staged date in order."""
        return [
            SceneQuality.model_validate(row)
            for key, rows in self.state.items()
            if key.endswith("_quality")
            for row in rows
        ]

    def save(self) -> None:
        """Write the state file (what a resumed attempt reads back)."""
        write_json(self.work / "state.json", self.state)


def work_root(out: Path) -> Path:
    """The folder holding the work folders of the runs writing ``out``."""
    return Path(str(out) + WORK_SUFFIX)


def start_run(
    out: Path, key: dict[str, Any], run_time: datetime | None = None
) -> tuple[str, RunStaging]:
    """The run id of ``key`` and its staging area (state reused from an earlier attempt).

    The run's time is, in this order: the one an earlier attempt recorded,
    ``SOURCE_DATE_EPOCH``, ``run_time``, the clock.
    """
    identifier = run_id(key)
    work = work_folder(work_root(out) / identifier[:16])
    state = read_json(work / "state.json") or {
        "started": resolve_run_time(os.environ, run_time or datetime.now(UTC))
    }
    run = RunStaging(work, state, {})
    run.save()
    return identifier, run


@contextlib.contextmanager
def run_client(client: Client | None, scheduler: str | None) -> Iterator[Client]:
    """``client`` when given, else a client of ``scheduler`` (or a local cluster) for the block."""
    if client is not None:
        yield client
        return
    with dask_client(scheduler) as started:
        yield started


def model_info(model: str | Path, card: ModelCard) -> ModelInfo:
    """The model as the manifest records it (a directory by its card's name, an alias by both)."""
    name = model_name(model, card)
    return ModelInfo(
        name=name.canonical,
        requested=name.requested if name.alias else None,
        weights_sha256=card.weights_sha256,
        architecture=f"{card.architecture}/{card.encoder}".rstrip("/"),
        classes={str(spec.id): spec.name for spec in card.classes},
    )


def run_grid(
    grid: RasterGrid, card: ModelCard, model: str | Path, report: Report
) -> tuple[RasterGrid, dict[str, Any]]:
    """The grid a run over the scenes' ``grid`` writes, and what its manifest records of it.

    A card with ``resampling: card_pixel_size`` reads finer scenes as block
    means at its pixel size (:mod:`geoseg.predict.resampling`): the run's
    grid is then ``grid`` zoomed out, the parameters record the resampling
    and ``report`` gets a one-line notice; as it gets one when ``model`` is
    an alias. Other cards: ``grid`` itself, nothing recorded.
    """
    if notice := alias_notice(model_name(model, card)):
        report(notice)
    resampling = resampling_for(card, grid)
    if resampling is None:
        return grid, {}
    if notice := resampling.notice("the run's scenes"):
        report(notice)
    return grid.zoom_out(resampling.factor), {"resampling": resampling.record()}


def check_grid(grid: RasterGrid, card: ModelCard, settings: InferenceSettings) -> PixelSizeCheck:
    """Refuse a run grid beyond ``settings.max_pixels`` or far from the card's pixel size.

    Called before any scene is read (checksums included); returns the pixel
    size check, which the manifest records.
    """
    check_pixel_budget(
        "the run's grid", grid.height, grid.width, len(card.band_names), settings.max_pixels
    )
    return check_pixel_size(
        f"the run's grid ({grid.crs.to_string()})",
        grid,
        card.pixel_size_m,
        allow_mismatch=settings.allow_pixel_size_mismatch,
    )


def scene_source(
    grid: RasterGrid,
    scenes: Sequence[SceneEntry],
    card: ModelCard,
    *,
    mask_buffer: int = DEFAULT_MASK_BUFFER,
    allow_external_hrefs: bool = False,
) -> MosaicSource:
    """The scenes (checksums verified) as one mosaic on ``grid`` with the card's bands.

    Clouds and shadows of the scenes' quality bands are masked, grown by
    ``mask_buffer`` pixels; a warning names each scene without a quality band.
    ``allow_external_hrefs``: see :func:`geoseg.catalog.stac.verify_entry`.
    """
    pairs = [
        (entry, verify_entry(entry, allow_external_hrefs=allow_external_hrefs)) for entry in scenes
    ]
    for entry in scenes:
        if entry.quality is None:
            warnings.warn(
                f"scene {entry.id} has no quality band: its clouds, shadows and snow are not "
                "masked and may be classified (and counted as change)",
                stacklevel=2,
            )
    return mosaic_source(grid, pairs, card.band_names, mask_buffer=mask_buffer)


def scene_quality(source: MosaicSource, client: Client, chunk_size: int) -> list[SceneQuality]:
    """Per scene of ``source``, the pixels observed and masked on its grid (summed by chunk)."""
    futures = client.map(source.mask_counts, source.grid.chunks(chunk_size), pure=False)
    totals = np.sum(np.stack(client.gather(futures)), axis=0)
    rows = []
    for layer, (observed, masked) in zip(source.layers, totals, strict=True):
        rows.append(
            SceneQuality(
                scene=layer.scene_id,
                quality_band=None if layer.quality is None else layer.quality.index,
                convention=None if layer.quality is None else layer.quality.convention.value,
                mask_buffer_px=source.mask_buffer,
                observed_pixels=int(observed),
                masked_pixels=int(masked),
                masked_share=round(float(masked) / float(observed), 6) if observed else 0.0,
            )
        )
    return rows


def stage_prediction(
    run: RunStaging,
    name: str,
    source: MosaicSource,
    model: str | Path,
    settings: InferenceSettings,
    placement: InferencePlacement,
    client: Client,
    progress: bool,
    *,
    probabilities: bool = False,
) -> PredictOutputs:
    """Labels of ``source`` staged as ``<name>.tif`` (and per-class ``<name>.prob.tif``).

    Skipped when an attempt finished it. The model runs where ``placement``
    says: the placement the manifest records. The scene's out-of-domain
    findings are kept in the run's state (:func:`domain_findings`), so a resumed
    run still reports them; the scenes' sensor is their files' common
    ``sensor`` tag, if any.
    """
    outputs = PredictOutputs(
        run.work / f"{name}.tif", run.work / f"{name}.prob.tif" if probabilities else None
    )
    if run.state.get(f"{name}_done") and all(path.exists() for path in outputs.paths):
        return outputs
    run.state[f"{name}_quality"] = [
        row.model_dump() for row in scene_quality(source, client, settings.chunk_size)
    ]
    sensors = {read_info(layer.path).tags.get("sensor", "") for layer in source.layers}
    result = predict_source(
        source,
        model,
        settings,
        outputs,
        client=client,
        work_dir=run.work / f"{name}-chunks",
        progress=progress,
        placement=placement,
        sensor=sensors.pop() if len(sensors) == 1 else "",
        stage="predict" if name == "labels" else f"predict {name}",
    )
    run.state[f"{name}{DOMAIN_SUFFIX}"] = [finding.to_dict() for finding in result.domain_findings]
    run.computed += result.chunks_computed
    run.reused += result.chunks_reused
    run.state[f"{name}_done"] = True
    run.save()
    return outputs


def stage_labels(
    run: RunStaging,
    name: str,
    source: MosaicSource,
    model: str | Path,
    settings: InferenceSettings,
    placement: InferencePlacement,
    client: Client,
    progress: bool,
) -> Path:
    """Labels of ``source`` staged as ``<name>.tif`` (:func:`stage_prediction`)."""
    return stage_prediction(run, name, source, model, settings, placement, client, progress).labels


def check_instance_model(card: ModelCard, scenes: Sequence[SceneEntry]) -> None:
    """Refuse, in one line, an ``--instance-model`` that is no detector or lacks a band.

    Raises
    ------
    ConfigError
        The card's task is not ``instance``.
    CatalogError
        A scene lacks one of the card's bands (the message names it, what the
        scene holds and the fix).
    """
    if card.task != "instance":
        raise ConfigError(
            f"--instance-model {card.name}: a {card.task} model; name an instance model "
            "(card task 'instance', e.g. buildings-atlanta)"
        )
    for entry in scenes:
        names = {band.name for band in entry.bands} | {
            band.common_name for band in entry.bands if band.common_name
        }
        missing = [name for name in card.band_names if name not in names]
        if missing:
            raise CatalogError(
                f"--instance-model {card.name} reads band(s) {', '.join(missing)}, which scene "
                f"{entry.id} does not have (it holds {', '.join(sorted(names))}); use a catalog "
                "whose scenes have them, or an instance model for these bands"
            )


@dataclass(frozen=True)
class Detector:
    """The ``--instance-model`` of a run: checked, placed, with its instance settings."""

    model: str | Path
    """As asked for (a shipped name, an alias or a directory)."""
    card: ModelCard
    placement: InferencePlacement
    """Where and in which precision it runs (fp32 for ``auto``: :func:`detector_settings`)."""
    settings: InstanceSettings

    def parameters(self) -> dict[str, Any]:
        """What the run's manifest records of it."""
        return {
            "instance_model": model_info(self.model, self.card).model_dump(),
            "instance_min_score": self.settings.min_score,
        }


def prepare_detector(
    model: str | Path,
    instance_settings: InstanceSettings | None,
    scenes: Sequence[SceneEntry],
    scene_grid: RasterGrid,
    settings: InferenceSettings,
    client: Client | None,
    scheduler: str | None,
    report: Report,
) -> Detector:
    """Check an ``--instance-model`` against the run's scenes and grid, and place it.

    Refused in one line, before any scene is read, as :func:`check_instance_model`
    and :func:`check_grid` say.
    """
    card = read_card(resolve_model_dir(model))
    check_instance_model(card, scenes)
    check_grid(run_grid(scene_grid, card, model, report)[0], card, settings)
    placement = model_placement(detector_settings(settings), card, client, scheduler)
    return Detector(model, card, placement, instance_settings or InstanceSettings())


def stage_instances(
    run: RunStaging,
    name: str,
    source: MosaicSource,
    detector: Detector,
    settings: InferenceSettings,
    client: Client,
    progress: bool,
    *,
    polygon_suffix: str = ".gpkg",
) -> tuple[Path, Path]:
    """Instances of ``source`` staged as ``<name>.instances.tif`` and ``<name>.instances<suffix>``.

    Detected on the cluster (:func:`workflows.predict_instances.predict_instances_source`),
    on the workers and with the precision of the detector's placement; skipped when an
    attempt finished it. The number of instances is kept in the run's state
    (``<name>_instances``).
    """
    raster = run.work / f"{name}.instances.tif"
    polygons = run.work / f"{name}.instances{polygon_suffix}"
    if run.state.get(f"{name}_instances_done") and raster.exists() and polygons.exists():
        return raster, polygons
    result = predict_instances_source(
        source,
        detector.model,
        settings,
        detector.settings,
        raster,
        polygons,
        client=client,
        work_dir=run.work / f"{name}-instance-chunks",
        progress=progress,
        placement=detector.placement,
        stage=f"detect {name}",
    )
    run.state[f"{name}_instances"] = result.instances
    run.state[f"{name}_instances_done"] = True
    run.save()
    return raster, polygons


def domain_findings(run: RunStaging) -> dict[str, list[dict[str, Any]]]:
    """Per staged scene (``labels``, ``before``, ``after``), its out-of-domain findings."""
    return {
        key.removesuffix(DOMAIN_SUFFIX): list(value)
        for key, value in sorted(run.state.items())
        if key.endswith(DOMAIN_SUFFIX)
    }


def domain_warnings(run: RunStaging) -> list[Flag]:
    """The out-of-domain findings as run-level ``out_of_range`` flags (one line each)."""
    return [
        Flag("out_of_range", "run", f"{name} scene: {finding['message']}")
        for name, findings in domain_findings(run).items()
        for finding in findings
    ]


def run_manifest(
    command: str,
    identifier: str,
    run: RunStaging,
    scenes: Sequence[SceneEntry],
    model: ModelInfo,
    parameters: dict[str, Any],
    grid: dict[str, Any],
    outputs: dict[str, Path],
) -> RunManifest:
    """The run's manifest (without timings: :func:`finish` adds them to the JSON).

    It records the scenes' out-of-domain findings (:func:`domain_findings`).
    """
    return RunManifest(
        command=command,
        run_id=identifier,
        started=run.started,
        inputs=[
            InputFile(id=entry.id, href=entry.data.href, sha256=entry.data.sha256 or "")
            for entry in scenes
        ],
        model=model,
        parameters=parameters,
        grid=grid,
        versions=software_versions(),
        outputs={name: path.name for name, path in outputs.items()},
        domain_findings=domain_findings(run),
        quality=run.quality,
    )


def write_manifest_table(geopackage: Path, manifest: RunManifest) -> None:
    """Add the manifest without timings to the staged ``geopackage`` as ``run_manifest``.

    The table records the run's time as its change time.
    """
    write_attribute_table(
        geopackage,
        MANIFEST_TABLE,
        pd.DataFrame(provenance_rows(manifest)),
        timestamp=manifest.started,
    )


ASSET_ROLES = {"quicklook": ("overview",), "manifest": ("metadata",)}
"""Roles of a run's assets other than ``data``, by asset key."""


def write_run_item(
    command: str,
    assets: dict[str, Path],
    *,
    grid: RasterGrid,
    scenes: Sequence[SceneEntry],
    card: ModelCard,
    started: str,
) -> Path:
    """The STAC Item of a published run, beside its first asset (the GeoPackage).

    Its time is the scenes' acquisition range, its processing time the run's
    (fixed across attempts), so a resumed run writes the same Item.
    """
    first = next(iter(assets.values()))
    ids = ", ".join(entry.id for entry in scenes)
    return write_output_item(
        first,
        {
            key: OutputAsset(path, ASSET_ROLES.get(key, ("data",)), key.replace("_", " "))
            for key, path in assets.items()
        },
        grid=grid,
        processed=datetime.fromisoformat(started),
        start=min(entry.start for entry in scenes),
        end=max(entry.end for entry in scenes),
        lineage=f"geoseg {command}: scenes {ids} segmented by model {card.name} "
        f"(weights sha256 {card.weights_sha256})",
        classes=card_classes(card),
    )


def finish(
    run: RunStaging,
    out: Path,
    publications: Sequence[tuple[Path, Path]],
    manifest: RunManifest,
    manifest_path: Path,
    started_clock: float,
) -> None:
    """Publish staged files, write the manifest JSON (with timings), drop the work folder."""
    run.timings["total_s"] = time.perf_counter() - started_clock
    for staged, final in publications:
        publish_file(staged, final)
    write_json(
        manifest_path,
        manifest.model_copy(update={"timings_s": run.timings}).model_dump(mode="json"),
    )
    remove_tree(work_root(out))
