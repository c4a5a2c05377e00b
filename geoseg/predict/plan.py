"""The plan of a prediction run: everything its tasks need, and the whole schedule.

A :class:`PredictPlan` is the normalised, picklable description of a run: the
source, which of its bands feed the model, the model, the tile layout, the
scaling, the precision, where the work directory is, and the schedule: the
batches of tiles (fixed groups of the global tile order, see
:func:`geoseg.predict.tiling.tile_batches`), the output chunks in row-major
order and, per chunk, the batches holding the tiles that touch it. The task
bodies are :func:`geoseg.predict.forward.forward_batch` (one per batch) and
:func:`geoseg.predict.assemble.assemble_chunk` (one per chunk);
``workflows/predict.py`` wires them into Dask in the plan's order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from geoseg.grid import PixelWindow
from geoseg.io.checkpoint import read_card
from geoseg.models.card import InputScaling
from geoseg.predict.domain import (
    DomainFinding,
    compare_domain,
    ground_pixel_size_m,
    scaled_sample_values,
)
from geoseg.predict.inference import ModelKey, model_key
from geoseg.predict.pixel_size import PixelSizeCheck, check_pixel_size
from geoseg.predict.placement import InferencePlacement
from geoseg.predict.preprocess import (
    SceneStatistics,
    resolve_band_indexes,
    sample_windows,
    scene_statistics,
)
from geoseg.predict.settings import Engine, InferenceSettings, Precision
from geoseg.predict.sources import RasterSource
from geoseg.predict.stitching import TileBatch, TileParts, tile_parts
from geoseg.predict.tiling import TileLayout, make_layout, tile_batches, tiles_touching

WORK_FORMAT = 3
"""Version of the work-directory layout; part of its hash."""


@dataclass(frozen=True)
class PlannedChunk:
    """One output chunk and the batches it is stitched from."""

    window: PixelWindow
    batches: tuple[int, ...]
    """Numbers (ascending) of the batches holding a tile that touches ``window``."""


@dataclass(frozen=True)
class PredictPlan:
    """Everything a task needs, validated once on the client, and the run's schedule."""

    source: RasterSource
    band_positions: tuple[int, ...]
    model: ModelKey
    layout: TileLayout
    scaling: InputScaling
    statistics: SceneStatistics | None
    precision: Precision
    class_ids: tuple[int, ...]
    work_dir: Path
    write_probabilities: bool
    batches: tuple[tuple[int, ...], ...]
    """Tile indexes of each batch, by batch number (the global tile order cut in groups)."""
    chunks: tuple[PlannedChunk, ...]
    """The output chunks in row-major order (their work files are named after them)."""
    pixel_size: PixelSizeCheck
    """The scene's ground pixel size against the card's (refused ones never get a plan)."""
    domain_findings: tuple[DomainFinding, ...] = ()
    """How the scene lies outside the card's training domain (empty: inside, or not recorded)."""
    engine: Engine = "torch"
    """The engine that runs the model (the placement's)."""

    @property
    def num_classes(self) -> int:
        """Number of model output channels."""
        return len(self.class_ids)


def batch_parts(plan: PredictPlan, indexes: Sequence[int], batch: TileBatch) -> list[TileParts]:
    """The parts of each tile of ``batch`` (views into its arrays)."""
    return tile_parts(
        plan.layout, indexes, plan.num_classes, batch.bands, batch.solo, plan.write_probabilities
    )


def schedule_chunks(
    layout: TileLayout, batches: Sequence[Sequence[int]], windows: Sequence[PixelWindow]
) -> tuple[PlannedChunk, ...]:
    """Each chunk of ``windows`` with the numbers of the batches it needs."""
    batch_of = {index: number for number, group in enumerate(batches) for index in group}
    return tuple(
        PlannedChunk(window, tuple(sorted({batch_of[i] for i in tiles_touching(layout, window)})))
        for window in windows
    )


def make_plan(
    source: RasterSource,
    model: str | Path,
    settings: InferenceSettings,
    placement: InferencePlacement,
    *,
    work_root: Path,
    write_probabilities: bool,
    sensor: str = "",
    destination: Sequence[str] = (),
) -> PredictPlan:
    """Validate a run's inputs once and describe it, schedule included, as a :class:`PredictPlan`.

    The model runs with the device, engine and precision of ``placement`` (see
    :func:`geoseg.predict.placement.place_inference`). Resolves the model (by
    name or directory), the model's bands among the source's, the tile
    geometry (default: the card's), and for ``scene_percentile`` scaling the
    scene's statistics from a fixed sample lattice. When the card records its
    training domain, the same samples, scaled, are compared with it
    (:func:`geoseg.predict.domain.compare_domain`, with the scene's ``sensor``
    when known) into :attr:`PredictPlan.domain_findings`. The work directory is
    ``work_root`` / a hash of everything that determines the outputs, so a
    rerun with the same inputs resumes. ``destination`` (the output paths) is
    part of that hash: runs writing different outputs never share a work
    directory, and a rerun writing the same ones finds its own.

    The scene's ground pixel size is checked against the card's first
    (:func:`geoseg.predict.pixel_size.check_pixel_size`).

    Raises
    ------
    GeosegError
        Any invalid input, with a message naming it (band mismatch, pixel size
        far from the card's, bad tile geometry, all-nodata scene...).
    """
    key = model_key(model, placement.device)
    card = read_card(key.directory)
    pixel_size = check_pixel_size(
        source.label,
        source.grid,
        card.pixel_size_m,
        allow_mismatch=settings.allow_pixel_size_mismatch,
    )
    indexes = resolve_band_indexes(source.label, card.band_names, source.band_names)
    positions = tuple(index - 1 for index in indexes)
    tile_size = card.tile_size if settings.tile is None else settings.tile
    tile_overlap = card.overlap if settings.overlap is None else settings.overlap
    grid = source.grid
    layout = make_layout(grid.height, grid.width, tile_size, tile_overlap)
    samples = []
    if card.scaling.method == "scene_percentile" or card.training_domain is not None:
        for window in sample_windows(grid):
            data, valid = source.read(window)
            samples.append((data[list(positions)], valid))
    statistics = None
    if card.scaling.method == "scene_percentile":
        statistics = scene_statistics(source.label, samples, card.scaling.percentiles)
    findings: tuple[DomainFinding, ...] = ()
    if card.training_domain is not None:
        findings = compare_domain(
            card.training_domain,
            scaled_sample_values(samples, card.scaling, statistics),
            pixel_size_m=ground_pixel_size_m(grid),
            sensor=sensor,
        )
    description = {
        "source": source.identity,
        "model": key.directory,
        "weights_sha256": key.weights_sha256,
        "device": placement.device,
        "precision": placement.precision,
        "engine": placement.engine,
        "bands": list(positions),
        "tile": tile_size,
        "overlap": tile_overlap,
        "batch_size": settings.batch_size,
        "chunk_size": settings.chunk_size,
        "probabilities": write_probabilities,
        "statistics": None if statistics is None else [statistics.low, statistics.high],
        "format": WORK_FORMAT,
        "destination": list(destination),
    }
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()
    batches = tuple(tile_batches(layout, settings.batch_size))
    return PredictPlan(
        source=source,
        band_positions=positions,
        model=key,
        layout=layout,
        scaling=card.scaling,
        statistics=statistics,
        precision=placement.precision,
        class_ids=tuple(card.class_ids),
        work_dir=work_root / f".geoseg-work-{digest[:20]}",
        write_probabilities=write_probabilities,
        batches=batches,
        chunks=schedule_chunks(layout, batches, grid.chunks(settings.chunk_size)),
        domain_findings=findings,
        pixel_size=pixel_size,
        engine=placement.engine,
    )
