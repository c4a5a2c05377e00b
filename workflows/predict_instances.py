"""``geoseg predict`` with an instance model as a Dask computation: wiring only.

Three steps, on the same cluster as semantic prediction (a local one by
default, or ``--scheduler`` / ``$DASK_SCHEDULER_ADDRESS``):

1. *detect* tasks (:func:`geoseg.predict.detect.detect_batch`), one per batch
   of the plan's global tile order (:func:`geoseg.predict.plan.make_plan`, as
   for semantic prediction), on the workers that run the model
   (:func:`workflows.cluster.model_placement`: CUDA workers where there are
   GPUs), the model loaded once per worker; their detections (small: masks
   cropped to their boxes) come back to the client;
2. the client resolves the scene's instances once
   (:func:`geoseg.predict.instances.resolve_instances`): an object cut by a tile
   seam is one instance;
3. *paint* tasks (:func:`geoseg.predict.paint.paint_chunk`), one per output
   chunk, each given the instances touching its chunk, write the chunk and its
   overview shares into the work directory, and the COG is assembled from them
   atomically (:func:`geoseg.io.cog.assemble_cog`), as the semantic label map is.

The detections do not depend on the chunk size (batches are fixed groups of
tiles) and the painting is per pixel, so the outputs are the same for any chunk
size, batch placement and cluster. The polygons are traced on the client from
the resolved instances (:func:`geoseg.vector.instances.instance_polygons`).
Each batch's detections are also kept in the run's work directory
(:func:`geoseg.io.instances.write_detections`, named after the instance
settings): a run that failed after some batches keeps the folder, and the same
command resumes from them; the folder is removed once the outputs are written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed import Client, as_completed

from geoseg.errors import ConfigError
from geoseg.grid import RasterGrid
from geoseg.io.checkpoint import read_card
from geoseg.io.cog import OutputStyle, assemble_cog
from geoseg.io.instances import (
    INSTANCE_BANDS,
    TASK_TAG,
    detections_path,
    read_detections,
    write_instance_polygons,
)
from geoseg.io.raster import read_info
from geoseg.io.workdir import (
    chunk_path,
    locked_work_dir,
    prepare_work_dir,
    remove_work_dir,
)
from geoseg.labels import CLASS_NAMES_TAG, MODEL_SHA256_TAG, MODEL_TAG, format_class_names
from geoseg.models.card import ModelCard
from geoseg.models.loading import model_name, resolve_model_dir
from geoseg.predict.detect import detect_stored
from geoseg.predict.instances import (
    Detection,
    Instance,
    InstanceIndex,
    InstanceSettings,
    resolve_instances,
)
from geoseg.predict.paint import ID_KIND, paint_chunk
from geoseg.predict.placement import InferencePlacement
from geoseg.predict.plan import PredictPlan
from geoseg.predict.settings import InferenceSettings
from geoseg.predict.sources import RasterSource
from geoseg.report.progress import Progress, stages
from geoseg.vector.instances import instance_polygons
from workflows.cluster import dask_client
from workflows.predict import (
    check_output,
    keep_or_remove,
    open_scene,
    overview_levels,
    plan_run,
    run_tags,
)
from workflows.tasks import geoseg_task


@dataclass(frozen=True)
class InstancePrediction:
    """What an instance prediction wrote."""

    raster: Path
    polygons: Path | None
    grid: RasterGrid
    tiles: int
    instances: int
    seconds: float
    device: str = "cpu"
    """Where the detector ran (``cpu`` or ``cuda``)."""
    precision: str = "fp32"
    """The precision it ran at."""


def detector_settings(settings: InferenceSettings) -> InferenceSettings:
    """``settings`` for a detector: precision ``auto`` is fp32.

    torchvision's Mask R-CNN decodes boxes in the dtype of its regression
    outputs (``BoxCoder.decode_single`` casts the proposals to it): under bf16
    autocast (8 significant bits) tile coordinates from 256 to 512 px fall on
    multiples of 2 px. A detector therefore runs in fp32 unless bf16 or fp16 is
    asked for explicitly.
    """
    if settings.precision != "auto":
        return settings
    return dataclasses.replace(settings, precision="fp32")


def predict_instances_source(
    source: RasterSource,
    model: str | Path,
    settings: InferenceSettings,
    instance_settings: InstanceSettings,
    raster: Path,
    polygons: Path | None = None,
    *,
    client: Client | None = None,
    work_dir: Path | None = None,
    progress: bool = True,
    placement: InferencePlacement | None = None,
    sensor: str = "",
    stage: str = "detect",
) -> InstancePrediction:
    """Detect the objects of ``source`` with an instance model; write the id COG (and polygons).

    Parameters
    ----------
    source
        The scene (a card with ``resampling: card_pixel_size`` reads a finer
        one at its pixel size, as :func:`workflows.predict.predict_source`).
    model
        Shipped model name or model directory of an instance model (card task
        ``instance``).
    settings
        Tile, overlap, batch and chunk sizes, device and precision (``auto``:
        fp32, :func:`detector_settings`); the outputs do not depend on the
        batch placement or the chunk size.
    instance_settings
        How detections become instances.
    raster
        The id COG: bands ``instance_id`` and ``class_id`` (uint32, 0: none).
    polygons
        The instance polygons (.gpkg layer ``instances``, or .parquet); optional.
    client, work_dir, progress, placement, sensor
        As for :func:`workflows.predict.predict_source`.
    stage
        The name of the detection stage in the progress display.

    Raises
    ------
    GeosegError
        A model that is not an instance model, invalid input or output
        (nothing is written at the output paths then).
    """
    started = time.perf_counter()
    for path in (raster, *([] if polygons is None else [polygons])):
        check_output(Path(path))
    card = read_card(resolve_model_dir(model))
    if card.task != "instance":
        raise ConfigError(
            f"model {card.name} is a {card.task} model; instance prediction needs one whose "
            "card says task: instance (e.g. buildings-atlanta)"
        )
    source, resampling, placement, plan = plan_run(
        source,
        model,
        card,
        detector_settings(settings),
        [Path(path) for path in (raster, polygons) if path is not None],
        work_dir=work_dir,
        client=client,
        placement=placement,
        sensor=sensor,
        write_probabilities=False,
    )
    display = stages(progress)
    with locked_work_dir(plan.work_dir):
        try:
            prepare_work_dir(plan.work_dir, {"source": source.label, "model": plan.model.directory})
            with contextlib.ExitStack() as stack:
                active = client if client is not None else stack.enter_context(dask_client(None))
                detections = _detect(active, plan, instance_settings, placement, display, stage)
                instances = resolve_instances(plan.layout, detections, instance_settings)
                _paint(active, plan, instances, display)
            style = _style(card, run_tags(model_name(model, card), resampling))
            windows = [chunk.window for chunk in plan.chunks]
            with display.stage("write", 1 if polygons is None else 2, "outputs") as writing:
                assemble_cog(
                    Path(raster),
                    source.grid,
                    [(window, chunk_path(plan.work_dir, window, ID_KIND)) for window in windows],
                    len(INSTANCE_BANDS),
                    style,
                    plan.work_dir,
                    overview_levels(plan.work_dir, source.grid, windows, ID_KIND),
                )
                writing.advance()
                if polygons is not None:
                    names = [spec.name for spec in card.classes]
                    frame = instance_polygons(
                        plan.layout, instances, source.grid, names, card.class_ids
                    )
                    write_instance_polygons(Path(polygons), frame)
                    writing.advance()
        except BaseException as error:
            done = sum(1 for _ in plan.work_dir.glob("detections_*.npz"))
            progress_text = f"detections of {done} of {len(plan.batches)} batches"
            keep_or_remove(plan.work_dir, error, done, progress_text)
            raise
        remove_work_dir(plan.work_dir)
    return InstancePrediction(
        Path(raster),
        None if polygons is None else Path(polygons),
        source.grid,
        plan.layout.count,
        len(instances),
        time.perf_counter() - started,
        device=plan.model.device,
        precision=plan.precision,
    )


def settings_tag(settings: InstanceSettings) -> str:
    """A short digest of the instance settings, in the names of the kept detections."""
    text = json.dumps(dataclasses.asdict(settings), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _detect(
    client: Client,
    plan: PredictPlan,
    instance_settings: InstanceSettings,
    placement: InferencePlacement,
    display: Progress,
    stage_name: str,
) -> list[Detection]:
    """Every batch's detections (kept ones read back), gathered in global tile order."""
    found: dict[int, list[Detection]] = {}
    numbers: dict[Any, int] = {}
    futures = []
    tag = settings_tag(instance_settings)
    for number, indexes in enumerate(plan.batches):
        path = detections_path(plan.work_dir, number, tag)
        kept = read_detections(path)
        if kept is not None:
            found[number] = kept
            continue
        future = client.submit(
            geoseg_task(detect_stored),
            plan,
            indexes,
            instance_settings,
            path,
            pure=False,
            priority=-number,
            **placement.restrictions,
        )
        numbers[future.key] = number
        futures.append(future)
    try:
        remaining = sum(len(plan.batches[number]) for number in numbers.values())
        with display.stage(stage_name, remaining, "tiles") as stage:
            for future in as_completed(futures, loop=client.loop):
                number = numbers[future.key]
                found[number] = future.result()
                stage.advance(len(plan.batches[number]))
    except BaseException:
        client.cancel(futures, force=True)
        raise
    return [detection for number in sorted(found) for detection in found[number]]


def _paint(
    client: Client, plan: PredictPlan, instances: Sequence[Instance], display: Progress
) -> int:
    """Paint and write every chunk on the workers; the pixels covered by instances."""
    near = InstanceIndex(instances)
    futures = [
        client.submit(geoseg_task(paint_chunk), plan, near(chunk.window), chunk.window, pure=False)
        for chunk in plan.chunks
    ]
    covered = 0
    try:
        with display.stage("paint", len(futures), "chunks") as stage:
            for future in as_completed(futures, loop=client.loop):
                covered += future.result()
                stage.advance()
    except BaseException:
        client.cancel(futures, force=True)
        raise
    return covered


def _style(card: ModelCard, extra_tags: dict[str, str]) -> OutputStyle:
    """Bands, tags and data type of the id COG."""
    names = {spec.id: spec.name for spec in card.classes}
    return OutputStyle(
        band_descriptions=INSTANCE_BANDS,
        nodata=None,
        tags={
            TASK_TAG: "instance",
            CLASS_NAMES_TAG: format_class_names(names),
            MODEL_TAG: card.name,
            MODEL_SHA256_TAG: card.weights_sha256,
            **extra_tags,
        },
        data_type="UInt32",
    )


def predict_instances_file(
    image: Path,
    model: str | Path,
    settings: InferenceSettings,
    instance_settings: InstanceSettings,
    raster: Path,
    polygons: Path | None = None,
    *,
    client: Client | None = None,
    work_dir: Path | None = None,
    progress: bool = True,
    masks: Sequence[Path] = (),
    mask_buffer: int = 0,
) -> InstancePrediction:
    """Detect the objects of the GeoTIFF ``image``; see :func:`predict_instances_source`.

    ``settings.bands`` names the raster's bands when its band descriptions do
    not; pixels marked in any of ``masks`` (grown by ``mask_buffer``) are
    invalid: no object there.
    """
    image = Path(image)
    source = open_scene(image, settings, [raster, polygons], masks, mask_buffer)
    return predict_instances_source(
        source,
        model,
        settings,
        instance_settings,
        raster,
        polygons,
        client=client,
        work_dir=work_dir,
        progress=progress,
        sensor=read_info(image).tags.get("sensor", ""),
    )
