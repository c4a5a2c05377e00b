"""``geoseg predict`` with an instance model: tiles -> detections -> instances -> COG + GeoPackage.

Runs in this process (no Dask yet): the tiles are detected in global tile
order, the instances resolved once for the whole scene (detections are small),
then the raster is painted chunk by chunk, so memory holds the detections and
one chunk, and the outputs do not depend on the chunk size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from geoseg.grid import RasterGrid
from geoseg.io.instances import write_id_cog, write_instance_polygons
from geoseg.models.loading import load_model
from geoseg.predict.detect import ScaledSource, detect_layout
from geoseg.predict.instances import (
    InstanceIndex,
    InstanceSettings,
    paint_window,
    resolve_instances,
)
from geoseg.predict.preprocess import resolve_band_indexes, sample_windows, scene_statistics
from geoseg.predict.settings import InferenceSettings
from geoseg.predict.sources import FileSource
from geoseg.predict.tiling import make_layout
from geoseg.vector.instances import instance_polygons


@dataclass(frozen=True)
class InstancePrediction:
    """What an instance prediction wrote."""

    raster: Path
    polygons: Path | None
    grid: RasterGrid
    tiles: int
    instances: int
    seconds: float


def predict_instances_file(
    image: Path,
    model: str,
    settings: InferenceSettings,
    instance_settings: InstanceSettings,
    raster: Path,
    polygons: Path | None = None,
) -> InstancePrediction:
    """Detect the objects of ``image`` with an instance model; write the COG (and polygons)."""
    started = time.perf_counter()
    loaded = load_model(model)
    card = loaded.card
    every_band = FileSource.open(image)
    indexes = resolve_band_indexes(
        every_band.label, card.band_names, every_band.band_names, settings.bands
    )
    source = FileSource.open(image, band_map=dict(zip(card.band_names, indexes, strict=True)))
    statistics = None
    if card.scaling.method == "scene_percentile":
        samples = [source.read(window) for window in sample_windows(source.grid)]
        statistics = scene_statistics(source.label, samples, card.scaling.percentiles)
    grid = source.grid
    tile = card.tile_size if settings.tile is None else settings.tile
    overlap = card.overlap if settings.overlap is None else settings.overlap
    layout = make_layout(grid.height, grid.width, tile, overlap)
    scene = ScaledSource(source, card.scaling, statistics)
    detections = detect_layout(loaded.module, scene, layout, instance_settings)
    instances = resolve_instances(layout, detections, instance_settings)
    names = {spec.id: spec.name for spec in card.classes}
    near = InstanceIndex(instances)
    chunks = (
        (window, *_with_class_ids(*paint_window(layout, near(window), window), card.class_ids))
        for window in grid.full_window.chunks(settings.chunk_size)
    )
    write_id_cog(raster, grid, chunks, task="instance", class_names=names)
    if polygons is not None:
        frame = instance_polygons(
            layout, instances, grid, [spec.name for spec in card.classes], card.class_ids
        )
        write_instance_polygons(polygons, frame)
    return InstancePrediction(
        raster, polygons, grid, layout.count, len(instances), time.perf_counter() - started
    )


def _with_class_ids(
    ids: NDArray[np.uint32], positions: NDArray[np.uint32], class_ids: list[int]
) -> tuple[NDArray[np.uint32], NDArray[np.uint32]]:
    """Class positions + 1 (0: none) as the card's class ids."""
    lookup = np.array([0, *class_ids], dtype=np.uint32)
    return ids, lookup[positions]
