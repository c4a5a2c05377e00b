"""``geoseg run-change``: the scenes of two dates on one grid through one model, wiring only.

Each date's scenes are segmented as in :mod:`workflows.run_bbox`, then
compared with :func:`workflows.change.change_file`. With an instance model,
its detector runs at both dates too (:func:`workflows.staging.stage_instances`)
and ``change_file`` counts the instances per region at both dates (table
``instances``), as ``geoseg change --before-instances/--after-instances``.
Staged and resumable as described in :mod:`workflows.staging`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

from distributed import Client

from geoseg.bbox import BBox
from geoseg.catalog.mosaic import MosaicSource, target_grid
from geoseg.catalog.stac import SceneEntry, region_file, search
from geoseg.change.flags import Flag
from geoseg.change.loss import LossRule
from geoseg.errors import OutputError
from geoseg.io.checkpoint import read_card
from geoseg.io.instances import add_instances_layer, read_instances
from geoseg.io.staging import check_output_paths, remove_file
from geoseg.limits import DEFAULT_MASK_BUFFER
from geoseg.models.loading import resolve_model_dir
from geoseg.predict.instances import InstanceSettings
from geoseg.predict.settings import InferenceSettings
from geoseg.report.progress import showing, stages
from workflows.change import change_file
from workflows.cluster import early_timings, model_placement
from workflows.staging import (
    Report,
    RunOutputs,
    check_grid,
    domain_warnings,
    finish,
    model_info,
    prepare_detector,
    quiet,
    run_client,
    run_grid,
    run_manifest,
    scene_source,
    stage_instances,
    stage_prediction,
    start_run,
    write_manifest_table,
    write_run_item,
)


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
    model: str | Path = "forest",
    catalog: str | Path | None = None,
    crs: str | None = None,
    resolution: float | None = None,
    settings: InferenceSettings | None = None,
    rule: LossRule | None = None,
    mask_buffer: int = DEFAULT_MASK_BUFFER,
    allow_external_hrefs: bool = False,
    progress: bool = True,
    scheduler: str | None = None,
    client: Client | None = None,
    run_time: datetime | None = None,
    report: Report = quiet,
    instance_model: str | Path | None = None,
    instance_settings: InstanceSettings | None = None,
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
    run_time
        The run's time, recorded in the manifest and as the GeoPackage's
        change time (default: the clock at the first attempt); an earlier
        attempt's time and ``SOURCE_DATE_EPOCH`` take precedence.
    rule
        Confidence and minimum mapping unit of loss and gain (default
        :class:`geoseg.change.loss.LossRule`); both dates are predicted with
        per-class probabilities, which the rule's threshold applies to.
    catalog, crs, resolution, settings, mask_buffer, allow_external_hrefs, progress,
    scheduler, client, report
        As for :func:`workflows.run_bbox.run_bbox`; masked pixels are nodata in
        both class maps, so the change counts them as masked.
    instance_model, instance_settings
        Also detect objects at both dates with this instance model (card task
        ``instance``; the scenes must have its bands): table ``instances``
        (:func:`geoseg.change.instance_counts.instance_change`; with ``stats``
        also ``<stem>.instances<ext>``), layers ``instances_before`` and
        ``instances_after``, and the id COGs ``<stem>.before.instances.tif`` and
        ``<stem>.after.instances.tif`` beside ``out``. The manifest records the
        model.

    Returns
    -------
    RunOutputs
        With the quality flags of the comparison (season from the scenes'
        acquisition dates, masked share, confidence, gain against loss),
        which the manifest records too.
    """
    started_clock = time.perf_counter()
    settings = settings or InferenceSettings()
    rule = rule or LossRule()
    out = Path(out)
    before_path, after_path = out.with_suffix(".before.tif"), out.with_suffix(".after.tif")
    manifest_path = out.with_name(out.stem + ".manifest.json")
    if out.suffix.lower() != ".gpkg":  # several layers: no GeoParquet here
        raise OutputError(f"{out}: run-change writes a GeoPackage of several layers; name it .gpkg")
    instance_rasters = {
        name: out.with_suffix(f".{name}.instances.tif") for name in ("before", "after")
    }
    check_output_paths(
        [
            out,
            before_path,
            after_path,
            manifest_path,
            *(instance_rasters.values() if instance_model is not None else ()),
        ]
    )
    regions_path = region_file(regions, location=None if catalog is None else catalog)

    clock = time.perf_counter()
    before_scenes = search(bbox, before, location=catalog)
    after_scenes = search(bbox, after, location=catalog)
    card = read_card(resolve_model_dir(model))
    scene_grid = target_grid(bbox, [*before_scenes, *after_scenes], crs=crs, resolution=resolution)
    grid, resampling = run_grid(scene_grid, card, model, report)
    pixel_size = check_grid(grid, card, settings)
    sources = {
        name: scene_source(
            scene_grid,
            scenes,
            card,
            mask_buffer=mask_buffer,
            allow_external_hrefs=allow_external_hrefs,
        )
        for name, scenes in (("before", before_scenes), ("after", after_scenes))
    }
    report(
        f"before: {', '.join(e.id for e in before_scenes)}; after: "
        f"{', '.join(e.id for e in after_scenes)}; grid {grid.height}x{grid.width} px"
    )
    info = model_info(model, card)
    placement = model_placement(settings, card, client, scheduler)
    parameters = {
        "bbox": list(bbox.bounds),
        "bbox_crs": bbox.crs.to_string(),
        "before": before,
        "after": after,
        "regions": regions_path.name,
        "region_layer": region_layer,
        "region_id_field": region_id_field,
        "forest_classes": card.forest_class_ids,
        "loss_rule": {"min_probability": rule.min_probability, "min_loss_ha": rule.min_loss_ha},
        "probabilities": True,
        "mask_buffer": mask_buffer,
        **settings.output_parameters(placement),
        **pixel_size.record(),
        **resampling,
    }
    detector = None
    detector_sources: dict[str, MosaicSource] = {}
    if instance_model is not None:
        detector = prepare_detector(
            instance_model,
            instance_settings,
            [*before_scenes, *after_scenes],
            scene_grid,
            settings,
            client,
            scheduler,
            report,
        )
        detector_sources = {
            name: scene_source(
                scene_grid,
                scenes,
                detector.card,
                mask_buffer=mask_buffer,
                allow_external_hrefs=allow_external_hrefs,
            )
            for name, scenes in (("before", before_scenes), ("after", after_scenes))
        }
        parameters.update(detector.parameters())
    fingerprints = {name: source.fingerprint() for name, source in sources.items()}
    key = {
        "command": "run-change",
        "sources": fingerprints,
        "model": info.identity(),
    }
    identifier, run = start_run(out, {**key, "parameters": parameters}, run_time)
    run.timings["search_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    with run_client(client, scheduler) as active:
        staged = {
            name: stage_prediction(
                run, name, source, model, settings, placement, active, progress, probabilities=True
            )
            for name, source in sources.items()
        }
        run.timings["predict_s"] = time.perf_counter() - clock
        run.timings.update(early_timings())  # the local cluster's start, when the command began it
        report(f"predicted: {run.computed} chunks computed, {run.reused} reused")
        staged_instances = {}
        if detector is not None:
            clock = time.perf_counter()
            for name in ("before", "after"):
                staged_instances[name] = stage_instances(
                    run, name, detector_sources[name], detector, settings, active, progress
                )
            run.timings["instances_s"] = time.perf_counter() - clock
            report(
                f"instances: {run.state['before_instances']} before, "
                f"{run.state['after_instances']} after"
            )
        out_of_range = domain_warnings(run)
        for flag in out_of_range:
            report(f"warning: {flag.message}")

        clock = time.perf_counter()
        staged_gpkg = run.work / "change.gpkg"
        remove_file(staged_gpkg)
        staged_stats = run.work / f"stats{stats.suffix}" if stats is not None else None
        manifest = run_manifest(
            "run-change",
            identifier,
            run,
            [*before_scenes, *after_scenes],
            info,
            parameters,
            fingerprints,
            {
                "geopackage": out,
                "labels_before": before_path,
                "labels_after": after_path,
                **{
                    f"instances_{name}": path for name, path in instance_rasters.items() if detector
                },
            },
        )
        with showing(stages(progress)):  # the change stages, as the predictions
            result = change_file(
                staged["before"].labels,
                staged["after"].labels,
                regions_path,
                staged_gpkg,
                region_layer=region_layer,
                region_id_field=region_id_field,
                stats=staged_stats,
                forest_classes=card.forest_class_ids or None,
                before_probabilities=staged["before"].probabilities,
                after_probabilities=staged["after"].probabilities,
                rule=rule,
                dates=(acquisition_date(before_scenes), acquisition_date(after_scenes)),
                client=active,
                provenance={"run_time": run.started},
                timestamp=run.started,
                run_flags=out_of_range,
                input_names={
                    "before": _scenes_name(before_scenes, before),
                    "after": _scenes_name(after_scenes, after),
                    "regions": str(regions),
                },
                instances=(
                    (staged_instances["before"][1], staged_instances["after"][1])
                    if staged_instances
                    else None
                ),
            )
        manifest = manifest.model_copy(update={"flags": flag_records(result.flags)})
        for name, (_, polygons) in staged_instances.items():
            add_instances_layer(
                staged_gpkg,
                read_instances(polygons),
                layer=f"instances_{name}",
                timestamp=run.started,
            )
        write_manifest_table(staged_gpkg, manifest)
        run.timings["change_s"] = time.perf_counter() - clock

    publications = [
        (staged["before"].labels, before_path),
        (staged["after"].labels, after_path),
        (staged_gpkg, out),
    ]
    stats_publications = []
    if stats is not None and staged_stats is not None:
        stats = Path(stats)
        kinds = ("", ".transitions", ".regions", *((".instances",) if staged_instances else ()))
        for kind in kinds:
            name = f"{staged_stats.stem}{kind}{staged_stats.suffix}"
            stats_publications.append(
                (staged_stats.with_name(name), stats.with_name(f"{stats.stem}{kind}{stats.suffix}"))
            )
    publications += stats_publications
    for name, (raster, _) in staged_instances.items():
        publications.append((raster, instance_rasters[name]))
    finish(run, out, publications, manifest, manifest_path, started_clock)
    stats_keys = ["stats", "stats_transitions", "stats_regions", "stats_instances"]
    item = write_run_item(
        "run-change",
        {
            "change": out,
            "labels_before": before_path,
            "labels_after": after_path,
            **{key: final for key, (_, final) in zip(stats_keys, stats_publications, strict=False)},
            **{f"instances_{name}": instance_rasters[name] for name in staged_instances},
            "manifest": manifest_path,
        },
        grid=grid,
        scenes=[*before_scenes, *after_scenes],
        card=card,
        started=run.started,
    )
    regions_table = result.statistics.regions
    report(
        f"forest loss {regions_table.loss_ha.sum():.2f} ha in patches of "
        f">= {rule.min_loss_ha:g} ha (probability >= {rule.min_probability:g} at both dates), gain "
        f"{regions_table.gain_ha.sum():.2f} ha, net {regions_table.net_change_ha.sum():+.2f} ha"
    )
    for _, path in publications:
        report(f"wrote {path}")
    report(f"wrote {manifest_path}")
    report(f"wrote {item}")
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
        flags=result.flags,
    )


def acquisition_date(scenes: Sequence[SceneEntry]) -> date | None:
    """The acquisition date of a date's mosaic: its first scene's (first valid wins).

    None when the scene is a multi-date item (no single acquisition date).
    """
    first = scenes[0]
    if first.end - first.start > timedelta(days=1):
        return None
    return first.start.date()


def flag_records(flags: Sequence[Flag]) -> list[dict[str, str]]:
    """Flags as the manifest records them: ``code``, ``where``, ``message``."""
    return [{"code": flag.code, "where": flag.where, "message": flag.message} for flag in flags]


def _scenes_name(scenes: Sequence[SceneEntry], when: str) -> str:
    """How ``change_grid`` names a date's input: its scenes and the dates the user gave."""
    return f"{', '.join(scene.id for scene in scenes)} ({when})"
