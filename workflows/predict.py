"""``geoseg predict`` as a Dask computation: wiring only.

Two kinds of tasks (bodies in :mod:`geoseg.predict.forward` and
:mod:`geoseg.predict.assemble`), in the schedule of the run's plan
(:func:`geoseg.predict.plan.make_plan`):

- *forward* tasks, one per batch of tiles; batches are fixed groups of the
  global tile order (independent of the chunk size), so every tile is computed
  exactly once, always in the same batch. Its output is stored in the work
  directory, not kept in worker memory (measured: files cost less than moving
  the arrays between worker processes, and waiting outputs never pile up in
  memory across a scene's width);
- *chunk* tasks, one per output chunk, depending on the forward tasks of the
  tiles that touch the chunk; each blends, writes its GeoTIFF into the work
  directory and returns a small summary (no pixels travel to the client).

Memory stays bounded by the chunk and batch sizes: chunks are submitted in
row-major order with at most a few in flight, batch outputs live in files
(written a tile at a time; chunk tasks read, strip by strip, only the rows of
the parts they need), and every batch file is retired
as soon as the last chunk needing it is done (kept as a spare that the next
batch is written into: :func:`geoseg.io.workdir.recycle_tile_batch`). A rerun
with the same inputs finds the same work directory and skips finished chunks;
the directory is deleted after the final COGs are written.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed import Client, Future, as_completed

from geoseg.errors import InputError, OutputError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.io.checkpoint import read_card
from geoseg.io.cog import Level, OutputStyle, assemble_cog
from geoseg.io.raster import read_info
from geoseg.io.workdir import (
    ChunkSummary,
    batch_path,
    chunk_path,
    finished_chunks,
    folder_bytes,
    locked_work_dir,
    overview_chunk_path,
    prepare_work_dir,
    read_summary,
    recycle_tile_batch,
    remove_work_dir,
)
from geoseg.labels import (
    CLASS_NAMES_TAG,
    LABEL_NODATA,
    MODEL_SHA256_TAG,
    MODEL_TAG,
    format_class_names,
)
from geoseg.models.card import ModelCard
from geoseg.models.loading import ModelName, model_name, resolve_model_dir
from geoseg.predict.assemble import assemble_chunk
from geoseg.predict.blending import PROBABILITY_SCALE
from geoseg.predict.domain import DomainFinding
from geoseg.predict.forward import forward_batch
from geoseg.predict.overviews import overview_factors, overview_window
from geoseg.predict.pixel_size import PixelSizeCheck
from geoseg.predict.placement import InferencePlacement
from geoseg.predict.plan import PlannedChunk, PredictPlan, make_plan
from geoseg.predict.resampling import RESAMPLING_TAG, Resampling, at_card_pixel_size
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from geoseg.predict.sources import FileSource, MaskedSource, RasterSource
from geoseg.report.progress import Progress, stages
from workflows.cluster import dask_client, model_placement
from workflows.tasks import geoseg_task

CHUNKS_IN_FLIGHT_PER_WORKER = 2
DOMAIN_TAG = "GEOSEG_DOMAIN_FINDINGS"
"""Output tag: JSON list of the scene's out-of-domain findings (only when the card can tell)."""
REQUESTED_TAG = "GEOSEG_MODEL_REQUESTED"
"""Output tag: the alias the model was asked for (only when it was asked for by an alias)."""
PROBABILITY_ENCODING = "uint8 = round(p * 255), band per class; nodata pixels are 0 (see labels)"


@dataclass(frozen=True)
class PredictResult:
    """What a prediction run produced."""

    labels: Path
    probabilities: Path | None
    grid: RasterGrid
    valid_pixels: int
    class_pixels: dict[int, int]
    tiles: int
    chunks_computed: int
    chunks_reused: int
    device: str
    precision: str
    seconds: float
    pixel_size: PixelSizeCheck
    domain_findings: tuple[DomainFinding, ...] = ()
    """How the scene lies outside the model's training domain (also in the COGs' tags)."""
    resampling: Resampling | None = None
    """How a ``card_pixel_size`` card read the scene (also in the COGs' tags); None: natively."""
    engine: str = "torch"
    """The engine that ran the model (``torch`` or ``onnxruntime``)."""


def check_output(path: Path) -> None:
    """Raise :class:`OutputError` unless ``path``'s folder exists and is writable."""
    if not path.parent.is_dir():
        raise OutputError(f"{path}: the output directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"{path}: the output directory {path.parent} is not writable")


def _run_chunks(
    client: Client,
    plan: PredictPlan,
    jobs: list[PlannedChunk],
    display: Progress,
    restrictions: dict[str, Any],
    stage_name: str = "predict",
) -> list[ChunkSummary]:
    """Submit chunk jobs in row-major order, a few at a time; return their summaries.

    Forward tasks are submitted with ``restrictions`` (see
    :attr:`geoseg.predict.placement.InferencePlacement.restrictions`). The
    stage ``stage_name`` of ``display`` counts the tiles of each forward task as
    it finishes (the forward passes are most of the time).
    """
    batches = plan.batches
    remaining_users = Counter(number for job in jobs for number in job.batches)
    forward: dict[int, Future[Path]] = {}
    forward_keys: dict[Any, int] = {}
    queue = deque(jobs)
    job_of: dict[Future[ChunkSummary], PlannedChunk] = {}
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    limit = CHUNKS_IN_FLIGHT_PER_WORKER * workers
    running = as_completed(loop=client.loop)

    def submit_next() -> None:
        job = queue.popleft()
        inputs = []
        for number in job.batches:
            if number not in forward:
                # global order first, whatever chunk asked first: the short batches that
                # end the order (tiling.batch_taper) then run last, when workers finish
                forward[number] = client.submit(
                    geoseg_task(forward_batch),
                    plan,
                    number,
                    batches[number],
                    pure=False,
                    priority=-number,
                    **restrictions,
                )
                forward_keys[forward[number].key] = number
                running.add(forward[number])
            inputs.append((batches[number], forward[number]))
        future = client.submit(
            geoseg_task(assemble_chunk), plan, job.window, inputs, pure=False, priority=10
        )
        job_of[future] = job
        running.add(future)

    tiles = sum(len(batches[number]) for number in remaining_users)
    summaries = []
    try:
        with display.stage(stage_name, tiles, "tiles") as stage:
            for _ in range(min(limit, len(queue))):
                submit_next()
            for future in running:
                number = forward_keys.pop(future.key, None)
                if number is not None:  # a forward task: its chunk task reports a failure
                    stage.advance(len(batches[number]))
                    continue
                summaries.append(future.result())
                job = job_of.pop(future)
                for number in job.batches:
                    remaining_users[number] -= 1
                    if remaining_users[number] == 0:
                        forward.pop(number).release()
                        recycle_tile_batch(batch_path(plan.work_dir, number))
                if queue:
                    submit_next()
    except BaseException:
        # a failed run stops its other tasks (on a shared cluster they would go on
        # writing into a work folder that is about to be removed or resumed)
        client.cancel([*forward.values(), *job_of], force=True)
        raise
    return summaries


def overview_levels(
    work_dir: Path, grid: RasterGrid, windows: list[PixelWindow], kind: str
) -> list[Level]:
    """Every overview level of output ``kind``: its grid and the chunks' shares."""
    levels: list[Level] = []
    for factor in overview_factors(grid.height, grid.width):
        shares = [
            (
                overview_window(window, grid, factor),
                overview_chunk_path(work_dir, window, kind, factor),
            )
            for window in windows
        ]
        levels.append(
            (
                grid.zoom_out(factor),
                [(level, path) for level, path in shares if not level.is_empty],
            )
        )
    return levels


def run_tags(name: ModelName, resampling: Resampling | None) -> dict[str, str]:
    """Output tags of how the model was asked for and how it read the scene (when it matters)."""
    tags = {}
    if name.alias:
        tags[REQUESTED_TAG] = name.requested
    if resampling is not None:
        tags[RESAMPLING_TAG] = json.dumps(resampling.record(), sort_keys=True)
    return tags


def _styles(
    card: ModelCard, findings: tuple[DomainFinding, ...], extra_tags: dict[str, str]
) -> tuple[OutputStyle, OutputStyle]:
    names = {spec.id: spec.name for spec in card.classes}
    tags = {
        CLASS_NAMES_TAG: format_class_names(names),
        MODEL_TAG: card.name,
        MODEL_SHA256_TAG: card.weights_sha256,
    }
    if card.training_domain is not None:
        tags[DOMAIN_TAG] = json.dumps([finding.to_dict() for finding in findings])
    tags.update(extra_tags)
    labels = OutputStyle(
        band_descriptions=("class",),
        nodata=LABEL_NODATA,
        colormap={spec.id: spec.rgb for spec in card.classes},
        tags=tags,
    )
    probabilities = OutputStyle(
        band_descriptions=tuple(spec.name for spec in card.classes),
        nodata=None,
        tags={**tags, "GEOSEG_PROBABILITY_ENCODING": PROBABILITY_ENCODING},
        scale=1.0 / PROBABILITY_SCALE,
        compression="DEFLATE",
        level=1,
    )
    return labels, probabilities


def predict_source(
    source: RasterSource,
    model: str | Path,
    settings: InferenceSettings,
    outputs: PredictOutputs,
    *,
    client: Client | None = None,
    work_dir: Path | None = None,
    progress: bool = True,
    placement: InferencePlacement | None = None,
    sensor: str = "",
    stage: str = "predict",
) -> PredictResult:
    """Segment ``source`` with ``model`` and write the label (and probability) COGs.

    Parameters
    ----------
    source
        The scene (any :class:`~geoseg.predict.sources.RasterSource`). With a
        card saying ``resampling: card_pixel_size``, a finer scene is read as
        block means at the card's pixel size
        (:func:`geoseg.predict.resampling.at_card_pixel_size`) and the outputs
        are on that zoomed grid (:attr:`PredictResult.resampling` says so).
    model
        Shipped model name or model directory.
    settings
        How the model runs (tile, overlap, batch and chunk sizes, device,
        precision); the outputs do not depend on the batch and chunk sizes.
        ``device`` and ``precision`` are resolved for the workers that run the
        model (:func:`workflows.cluster.inference_placement`): on a cluster
        where only some workers have a GPU, inference goes to those.
    outputs
        The label COG (uint8, nodata 255, colour table, class names) and the
        optional per-class probability COG: one band per class in the card's
        order, named after the class, uint8 ``round(p * 255)`` (band scale
        1/255), 0 where the input is nodata (masked by the label raster).
    client
        A Dask client; default a local cluster (or ``$DASK_SCHEDULER_ADDRESS``).
        Workers must see the same filesystem (work directory, model, input).
    work_dir
        Folder for the resumable work directory; default the output's folder.
    progress
        Show the stages (:func:`geoseg.report.progress.current`: on a terminal,
        a line with the tiles done and an ETA).
    placement
        Where and how the model runs, when the caller has already asked the
        cluster (:func:`workflows.cluster.inference_placement`); the device and
        precision of ``settings`` are then not looked at.
    sensor
        The scene's sensor (free text, e.g. ``'Landsat-8 OLI'``; ``''`` unknown),
        for the out-of-domain check (:attr:`PredictResult.domain_findings`).
    stage
        The name of the prediction's stage in the progress display.

    Raises
    ------
    GeosegError
        Invalid input or output (nothing is written at the output paths then).
    """
    started = time.perf_counter()
    for path in outputs.paths:
        check_output(path)
    card = read_card(resolve_model_dir(model))
    source, resampling, placement, plan = plan_run(
        source,
        model,
        card,
        settings,
        outputs.paths,
        work_dir=work_dir,
        client=client,
        placement=placement,
        sensor=sensor,
        write_probabilities=outputs.probabilities is not None,
    )
    extra_tags = run_tags(model_name(model, card), resampling)
    with locked_work_dir(plan.work_dir):
        try:
            return _predict_planned(
                source,
                card,
                plan,
                placement,
                outputs,
                client,
                progress,
                started,
                (resampling, extra_tags),
                stage,
            )
        except BaseException as error:
            done = finished_chunks(plan.work_dir)
            keep_or_remove(plan.work_dir, error, done, f"{done} of {len(plan.chunks)} chunks done")
            raise


def plan_run(
    source: RasterSource,
    model: str | Path,
    card: ModelCard,
    settings: InferenceSettings,
    outputs: Sequence[Path],
    *,
    work_dir: Path | None,
    client: Client | None,
    placement: InferencePlacement | None,
    sensor: str,
    write_probabilities: bool,
) -> tuple[RasterSource, Resampling | None, InferencePlacement, PredictPlan]:
    """The scene as ``card`` reads it, the model's placement and the plan of a run.

    A ``card_pixel_size`` card reads a finer scene as block means at its pixel
    size; the placement is asked of the cluster unless given; the work
    directory lies in ``work_dir`` (default: the first output's folder).
    """
    source, resampling = at_card_pixel_size(source, card)
    placement = placement or model_placement(settings, card, client)
    plan = make_plan(
        source,
        model,
        settings,
        placement,
        work_root=Path(work_dir) if work_dir is not None else Path(outputs[0]).parent,
        write_probabilities=write_probabilities,
        sensor=sensor,
        destination=[str(Path(path).resolve()) for path in outputs],
    )
    return source, resampling, placement, plan


def keep_or_remove(work_dir: Path, error: BaseException, done: int, progress: str) -> None:
    """After a failure: remove a work folder with nothing ``done``, else say it is kept.

    ``progress`` says what is done (e.g. ``3 of 16 chunks done``), in the note
    added to ``error``.
    """
    if done == 0:
        remove_work_dir(work_dir)
        return
    size = folder_bytes(work_dir) / 2**20
    error.add_note(
        f"the work folder {work_dir} ({size:.1f} MiB, {progress}) is kept: run the same "
        "command again to resume, or delete it to start over"
    )


def _predict_planned(
    source: RasterSource,
    card: ModelCard,
    plan: PredictPlan,
    placement: InferencePlacement,
    outputs: PredictOutputs,
    client: Client | None,
    progress: bool,
    started: float,
    read_as: tuple[Resampling | None, dict[str, str]],
    stage: str = "predict",
) -> PredictResult:
    """The run of :func:`predict_source` once its work folder is locked.

    ``read_as``: how the card read the scene, and the output tags saying so.
    """
    resampling, extra_tags = read_as
    prepare_work_dir(plan.work_dir, {"source": source.label, "model": plan.model.directory})
    summaries: list[ChunkSummary] = []
    jobs = []
    for chunk in plan.chunks:
        done = read_summary(chunk_path(plan.work_dir, chunk.window, "summary"))
        if done is not None:
            summaries.append(done)
            continue
        jobs.append(chunk)
    reused = len(summaries)
    if jobs:
        with contextlib.ExitStack() as stack:
            active = client if client is not None else stack.enter_context(dask_client(None))
            summaries.extend(
                _run_chunks(active, plan, jobs, stages(progress), placement.restrictions, stage)
            )
    valid_pixels = sum(summary.valid_pixels for summary in summaries)
    if valid_pixels == 0:
        remove_work_dir(plan.work_dir)
        raise InputError(
            f"{source.label}: every pixel is nodata; nothing to segment (check the file's "
            "nodata value and mask)"
        )
    labels_style, probabilities_style = _styles(card, plan.domain_findings, extra_tags)
    grid = source.grid
    windows = [chunk.window for chunk in plan.chunks]
    finals = [(outputs.labels, "labels", 1, labels_style)]
    if outputs.probabilities is not None:
        finals.insert(
            0, (outputs.probabilities, "probabilities", plan.num_classes, probabilities_style)
        )
    with stages(progress).stage("write", len(finals), "COGs") as writing:
        for out, kind, bands, style in finals:
            chunks = [(window, chunk_path(plan.work_dir, window, kind)) for window in windows]
            levels = overview_levels(plan.work_dir, grid, windows, kind)
            assemble_cog(out, grid, chunks, bands, style, plan.work_dir, levels)
            writing.advance()
    remove_work_dir(plan.work_dir)
    class_pixels: Counter[int] = Counter()
    for summary in summaries:
        class_pixels.update(summary.class_pixels)
    return PredictResult(
        labels=outputs.labels,
        probabilities=outputs.probabilities,
        grid=grid,
        valid_pixels=valid_pixels,
        class_pixels=dict(sorted(class_pixels.items())),
        tiles=plan.layout.count,
        chunks_computed=len(summaries) - reused,
        chunks_reused=reused,
        device=plan.model.device,
        precision=plan.precision,
        engine=plan.engine,
        seconds=time.perf_counter() - started,
        domain_findings=plan.domain_findings,
        pixel_size=plan.pixel_size,
        resampling=resampling,
    )


def open_scene(
    image: Path,
    settings: InferenceSettings,
    outputs: Sequence[Path | None],
    masks: Sequence[Path] = (),
    mask_buffer: int = 0,
) -> RasterSource:
    """The GeoTIFF ``image`` as a source, its pixels marked in ``masks`` invalid.

    ``settings`` gives its band names, pixel bound and VRT permission; none of
    ``outputs`` may be the input itself.

    Raises
    ------
    OutputError
        An output would overwrite the input.
    """
    for path in outputs:
        if path is not None and Path(path).resolve() == Path(image).resolve():
            raise OutputError(f"{path}: the output would overwrite the input; choose another")
    source: RasterSource = FileSource.open(
        image,
        band_map=settings.bands,
        max_pixels=settings.max_pixels,
        allow_vrt=settings.allow_vrt,
    )
    if masks:
        source = MaskedSource.open(source, masks, mask_buffer)
    return source


def predict_file(
    input: Path,
    model: str | Path,
    settings: InferenceSettings,
    outputs: PredictOutputs,
    *,
    client: Client | None = None,
    work_dir: Path | None = None,
    progress: bool = True,
    masks: Sequence[Path] = (),
    mask_buffer: int = 0,
) -> PredictResult:
    """Segment the GeoTIFF ``input``; see :func:`predict_source` for the parameters.

    ``settings.bands`` (``{name: 1-based index}``) names the raster's bands when
    its band descriptions do not (e.g. ``{"blue": 1, "green": 2, "red": 3, "nir": 4}``).
    Pixels marked (non-zero) in any of ``masks``, grown by ``mask_buffer``
    pixels, are nodata: label 255 and probability 0.
    The raster's ``sensor`` tag, when it has one, is the scene's sensor.
    """
    input = Path(input)
    source = open_scene(input, settings, [outputs.labels], masks, mask_buffer)
    return predict_source(
        source,
        model,
        settings,
        outputs,
        client=client,
        work_dir=work_dir,
        progress=progress,
        sensor=read_info(input).tags.get("sensor", ""),
    )
