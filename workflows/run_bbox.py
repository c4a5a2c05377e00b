"""``geoseg run``: segment the scenes over a bbox and export the results, wiring only.

Catalog search over a bbox -> scenes verified by checksum -> one target grid
(:mod:`geoseg.catalog.mosaic`) -> chunked inference on Dask
(:func:`workflows.predict.predict_source`) -> seam-free polygons
(:func:`workflows.vectorize.vectorize_file`) -> GeoPackage with the class
polygons, the per-class area table and the run manifest; plus the label COG,
a quicklook PNG and the manifest JSON. With an instance model, its detector
also runs over the same scenes (:func:`workflows.predict_instances.predict_instances_source`):
its polygons become layer ``instances`` and its id COG goes beside the labels.
Staged and resumable as described in :mod:`workflows.staging`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
from distributed import Client

from geoseg.bbox import BBox
from geoseg.catalog.mosaic import MosaicSource, coarser_grid, target_grid
from geoseg.catalog.stac import SceneEntry, search
from geoseg.io.checkpoint import read_card
from geoseg.io.instances import add_instances_layer, read_instances
from geoseg.io.report import save_png
from geoseg.io.runs import read_labels_preview, write_attribute_table
from geoseg.io.staging import check_output_paths, remove_file
from geoseg.io.tables import write_table
from geoseg.io.vector import polygon_format, read_vector
from geoseg.limits import DEFAULT_MASK_BUFFER
from geoseg.models.card import ModelCard
from geoseg.models.loading import resolve_model_dir
from geoseg.predict.instances import InstanceSettings
from geoseg.predict.settings import InferenceSettings
from geoseg.report.quicklook import LegendClass, quicklook_figure, stretch_rgb
from geoseg.report.summary import class_area_table
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
    stage_labels,
    start_run,
    write_manifest_table,
    write_run_item,
)
from workflows.vectorize import vectorize_file

CLASS_LAYER = "classes"
AREA_TABLE = "class_areas"
QUICKLOOK_SIDE = 640
QUICKLOOK_DPI = 90


def _quicklook(
    source: MosaicSource,
    scenes: Sequence[SceneEntry],
    labels: Path,
    card: ModelCard,
    path: Path,
) -> None:
    preview = coarser_grid(source.grid, QUICKLOOK_SIDE)
    colour = source.with_bands(scenes, ["red", "green", "blue"]).unmasked().on_grid(preview)
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


def default_paths(out: Path) -> tuple[Path, Path, Path]:
    """Label COG, quicklook PNG and manifest JSON beside ``out`` (same stem)."""
    return (
        out.with_suffix(".tif"),
        out.with_suffix(".png"),
        out.with_name(out.stem + ".manifest.json"),
    )


def areas_path(out: Path) -> Path:
    """The class-area table beside a GeoParquet ``out`` (a GeoPackage holds it as a table)."""
    return out.with_name(out.stem + ".class_areas.parquet")


def instance_paths(out: Path) -> tuple[Path, Path | None]:
    """The instance id COG beside ``out``, and the instance polygons beside a GeoParquet ``out``.

    (A GeoPackage ``out`` holds the polygons as layer ``instances``.)
    """
    polygons = out.with_name(out.stem + ".instances.parquet")
    return out.with_name(out.stem + ".instances.tif"), (
        polygons if polygon_format(out) == "parquet" else None
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
    mask_buffer: int = DEFAULT_MASK_BUFFER,
    allow_external_hrefs: bool = False,
    progress: bool = True,
    scheduler: str | None = None,
    client: Client | None = None,
    report: Report = quiet,
    instance_model: str | Path | None = None,
    instance_settings: InstanceSettings | None = None,
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
        ``run_manifest``; or a ``.parquet`` file: the polygons as GeoParquet,
        the area table beside it (:func:`areas_path`), the manifest in its JSON.
    model
        Shipped model name or model directory.
    labels_out, quicklook_out
        Label COG and quicklook PNG; default beside ``out`` with its stem.
    catalog
        Static catalog path or STAC API URL; default the embedded catalog.
    crs, resolution
        Target grid; default the scenes' CRS and resolution.
    settings
        Inference settings (see :func:`workflows.predict.predict_source`); the
        grid is checked against its ``max_pixels`` and the card's pixel size
        (recorded in the manifest) before any scene is read.
    mask_buffer
        Pixels by which the clouds and shadows of the scenes' quality bands
        grow before they are masked (label 255); see :mod:`geoseg.quality`.
    allow_external_hrefs
        Read catalog files outside the data directory (see
        :func:`geoseg.catalog.stac.verify_entry`).
    progress
        Show the stages (:mod:`geoseg.report.progress`).
    scheduler, client
        Where to run: an existing client, a scheduler address, or (default)
        ``$DASK_SCHEDULER_ADDRESS`` or a local cluster.
    report
        Called with one line per stage.
    instance_model, instance_settings
        Also detect objects with this instance model (card task ``instance``)
        over the same scenes, on the same cluster: layer ``instances`` of
        ``out`` (or ``<stem>.instances.parquet`` beside a GeoParquet ``out``)
        and the id COG ``<stem>.instances.tif`` (:func:`instance_paths`). Its
        bands must be among the scenes'; the manifest records the model.
    """
    started_clock = time.perf_counter()
    settings = settings or InferenceSettings()
    out = Path(out)
    default_labels, default_quicklook, manifest_path = default_paths(out)
    labels_path = Path(labels_out) if labels_out else default_labels
    quicklook_path = Path(quicklook_out) if quicklook_out else default_quicklook
    geoparquet = polygon_format(out) == "parquet"
    finals = [out, labels_path, quicklook_path, manifest_path]
    instance_raster, instance_polygons = instance_paths(out)
    if instance_model is not None:
        finals += [instance_raster, *([] if instance_polygons is None else [instance_polygons])]
    check_output_paths([*finals, areas_path(out)] if geoparquet else finals)

    clock = time.perf_counter()
    scenes = search(bbox, datetime_range, location=catalog)
    card = read_card(resolve_model_dir(model))
    scene_grid = target_grid(bbox, scenes, crs=crs, resolution=resolution)
    grid, resampling = run_grid(scene_grid, card, model, report)
    pixel_size = check_grid(grid, card, settings)
    source = scene_source(
        scene_grid,
        scenes,
        card,
        mask_buffer=mask_buffer,
        allow_external_hrefs=allow_external_hrefs,
    )
    report(
        f"scenes: {', '.join(entry.id for entry in scenes)}; grid {grid.height}x{grid.width} "
        f"px in {grid.crs.to_string()}"
    )
    info = model_info(model, card)
    placement = model_placement(settings, card, client, scheduler)
    parameters = {
        "bbox": list(bbox.bounds),
        "bbox_crs": bbox.crs.to_string(),
        "datetime": datetime_range,
        "mask_buffer": mask_buffer,
        **settings.output_parameters(placement),
        **pixel_size.record(),
        **resampling,
    }
    detector = detector_source = None
    if instance_model is not None:
        detector = prepare_detector(
            instance_model,
            instance_settings,
            scenes,
            scene_grid,
            settings,
            client,
            scheduler,
            report,
        )
        detector_source = scene_source(
            scene_grid,
            scenes,
            detector.card,
            mask_buffer=mask_buffer,
            allow_external_hrefs=allow_external_hrefs,
        )
        parameters.update(detector.parameters())
    fingerprint = source.fingerprint()
    key = {"command": "run", "source": fingerprint, "model": info.identity()}
    identifier, run = start_run(out, {**key, "parameters": parameters})
    run.timings["search_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    with run_client(client, scheduler) as active:
        staged_labels = stage_labels(
            run, "labels", source, model, settings, placement, active, progress
        )
        run.timings["predict_s"] = time.perf_counter() - clock
        run.timings.update(early_timings())  # the local cluster's start, when the command began it
        report(f"predicted: {run.computed} chunks computed, {run.reused} reused")
        for flag in domain_warnings(run):
            report(f"warning: {flag.message}")

        clock = time.perf_counter()
        manifest = run_manifest(
            "run",
            identifier,
            run,
            scenes,
            info,
            parameters,
            fingerprint,
            {
                "geoparquet" if geoparquet else "geopackage": out,
                "labels": labels_path,
                "quicklook": quicklook_path,
                **({"class_areas": areas_path(out)} if geoparquet else {}),
                **({"instances": instance_raster} if detector is not None else {}),
                **(
                    {"instance_polygons": instance_polygons}
                    if detector is not None and instance_polygons is not None
                    else {}
                ),
            },
        )
        staged_polygons = run.work / f"out{out.suffix.lower()}"
        remove_file(staged_polygons)
        vectorize_file(
            staged_labels,
            staged_polygons,
            layer=CLASS_LAYER,
            client=active,
            provenance={
                "source": ",".join(entry.id for entry in scenes),
                "model": f"{info.name}@{card.weights_sha256[:12]}",
                "run_time": run.started,
            },
            timestamp=run.started,
            progress=progress,
        )
        if geoparquet:
            polygons = gpd.read_parquet(staged_polygons)
        else:
            polygons = read_vector(staged_polygons, layer=CLASS_LAYER)
        areas = class_area_table(
            polygons["class_id"].to_numpy(),
            polygons["area_m2"].to_numpy(),
            {spec.id: spec.name for spec in card.classes},
        )
        staged_areas = run.work / "class_areas.parquet"
        if geoparquet:
            write_table(areas, staged_areas)
        else:
            write_attribute_table(staged_polygons, AREA_TABLE, areas, timestamp=run.started)
            write_manifest_table(staged_polygons, manifest)
        run.timings["vectorize_s"] = time.perf_counter() - clock
        report(f"vectorized: {len(polygons)} polygons")
        staged_instances = None
        if detector is not None and detector_source is not None:
            clock = time.perf_counter()
            staged_instances = stage_instances(
                run,
                "labels",
                detector_source,
                detector,
                settings,
                active,
                progress,
                polygon_suffix=out.suffix.lower(),
            )
            if not geoparquet:
                add_instances_layer(
                    staged_polygons, read_instances(staged_instances[1]), timestamp=run.started
                )
            run.timings["instances_s"] = time.perf_counter() - clock
            report(f"instances: {run.state['labels_instances']} objects")

    clock = time.perf_counter()
    staged_quicklook = run.work / "quicklook.png"
    _quicklook(source, scenes, staged_labels, card, staged_quicklook)
    run.timings["quicklook_s"] = time.perf_counter() - clock

    publications = [
        (staged_labels, labels_path),
        (staged_quicklook, quicklook_path),
        (staged_polygons, out),
    ]
    if geoparquet:
        publications.append((staged_areas, areas_path(out)))
    extra = [areas_path(out)] if geoparquet else []
    instance_assets = {}
    if staged_instances is not None:
        publications.append((staged_instances[0], instance_raster))
        instance_assets["instances"] = instance_raster
        if instance_polygons is not None:
            publications.append((staged_instances[1], instance_polygons))
            instance_assets["instance_polygons"] = instance_polygons
        extra += list(instance_assets.values())
    finish(run, out, publications, manifest, manifest_path, started_clock)
    item = write_run_item(
        "run",
        {
            "polygons": out,
            **({"class_areas": areas_path(out)} if geoparquet else {}),
            "labels": labels_path,
            "quicklook": quicklook_path,
            **instance_assets,
            "manifest": manifest_path,
        },
        grid=grid,
        scenes=scenes,
        card=card,
        started=run.started,
    )
    for path in (out, *extra, labels_path, quicklook_path, manifest_path, item):
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
