"""``geoseg.segment``: a model over an xarray scene, as a lazy dask graph.

The graph has the engine's two kinds of tasks (see ``workflows/predict.py``),
built from the same plan (:func:`geoseg.predict.plan.make_plan`) and the same
task bodies, so the labels are the same bytes as ``geoseg predict`` writes for
the same pixels, whatever the chunking of the input or of the output:

- one *forward* task per batch of tiles (the global tile order cut in fixed
  groups), depending on the windows of the input array its tile rows cover;
  it returns the batch's stitching parts
  (:func:`geoseg.predict.forward.compute_batch`) instead of storing them in a
  work directory;
- one *chunk* task per output chunk, depending on the forward tasks of the
  tiles touching it, blending them with the pure
  :func:`geoseg.predict.assemble.stitch_chunk`.

Nothing is computed until the result is, by whatever scheduler the caller uses
(a ``distributed`` client if one is the default, else Dask's threads), except
for models that scale by scene percentiles: their statistics come from a fixed
lattice of 64 small sample windows, read when :func:`segment` is called.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import annotate, compute, tokenize
from dask.delayed import Delayed, delayed
from numpy.typing import NDArray

from geoseg.grid import PixelWindow, RasterGrid
from geoseg.labels import CLASS_NAMES_TAG, LABEL_NODATA, MODEL_TAG, format_class_names
from geoseg.models.card import ModelCard
from geoseg.models.loading import Model, open_model
from geoseg.predict.arrays import (
    SceneArray,
    WindowSource,
    pad_window,
    scene_array,
    window_values,
    zoomed_values,
)
from geoseg.predict.assemble import gather_tiles, stitch_chunk
from geoseg.predict.blending import PROBABILITY_SCALE
from geoseg.predict.forward import compute_batch
from geoseg.predict.placement import InferencePlacement
from geoseg.predict.plan import PredictPlan, make_plan
from geoseg.predict.preprocess import resolve_band_indexes, sample_windows
from geoseg.predict.resampling import RESAMPLING_TAG, resampling_for
from geoseg.predict.settings import InferenceSettings
from geoseg.predict.stitching import TileBatch
from workflows.cluster import model_placement

Read = tuple[PixelWindow, PixelWindow]
"""A boundless window of a task and its part inside the scene."""


def _boundless(window: PixelWindow, grid: RasterGrid) -> Read:
    return window, window.clip(grid.height, grid.width)


def _read_window(
    raw: NDArray[Any], nodata: float | None, read: Read
) -> tuple[Any, NDArray[np.bool_]]:
    values, valid = window_values(np.asarray(raw), nodata)
    return pad_window(values, valid, read[1], read[0])


def _forward(
    plan: PredictPlan,
    indexes: Sequence[int],
    reads: Sequence[Read],
    nodata: float | None,
    *raws: NDArray[Any],
) -> TileBatch:
    """Task: one batch of tiles through the model, from the windows it was given."""
    source = plan.source
    windows = {
        read[0]: _read_window(raw, nodata, read) for read, raw in zip(reads, raws, strict=True)
    }
    local = WindowSource(source.grid, source.band_names, source.label, windows)
    return compute_batch(replace(plan, source=local), indexes)


def _stitched(
    plan: PredictPlan,
    window: PixelWindow,
    indexes: Sequence[Sequence[int]],
    batches: Sequence[TileBatch],
) -> tuple[NDArray[np.uint8], NDArray[np.uint8] | None]:
    tiles, valid = gather_tiles(plan, window, list(zip(indexes, batches, strict=True)))
    return stitch_chunk(plan.layout, window, tiles, valid, plan.class_ids, plan.write_probabilities)


def _chunk_labels(
    plan: PredictPlan, window: PixelWindow, indexes: Sequence[Sequence[int]], *batches: TileBatch
) -> NDArray[np.uint8]:
    """Task: the labels of one output chunk."""
    return _stitched(plan, window, indexes, batches)[0]


def _chunk_probabilities(
    plan: PredictPlan, window: PixelWindow, indexes: Sequence[Sequence[int]], *batches: TileBatch
) -> NDArray[np.float32]:
    """Task: the probabilities of one output chunk, as the probability COG holds them."""
    quantized = _stitched(plan, window, indexes, batches)[1]
    assert quantized is not None  # the plan keeps probabilities
    return quantized.astype(np.float32) / np.float32(PROBABILITY_SCALE)


def _zoomed(scene: SceneArray, raw: da.Array, factor: int) -> tuple[SceneArray, da.Array]:
    """The scene and its model bands read as ``factor`` x ``factor`` block means (NaN: invalid).

    Chunks are cut at whole blocks, so each output chunk is the block means of
    one input chunk (:func:`geoseg.predict.arrays.zoomed_values`); the values
    are those a zoomed file read gives for the same pixels.
    """
    sizes = [max(factor, -(-chunks[0] // factor) * factor) for chunks in raw.chunks[1:]]
    aligned = raw.rechunk({0: -1, 1: sizes[0], 2: sizes[1]})
    zoomed_chunks = tuple(tuple(-(-size // factor) for size in sides) for sides in aligned.chunks)
    blocks: da.Array = aligned.map_blocks(
        zoomed_values,
        scene.nodata,
        factor,
        chunks=(aligned.chunks[0], *zoomed_chunks[1:]),
        dtype=np.float32,
        meta=np.empty((0, 0, 0), dtype=np.float32),
    )
    return replace(scene, grid=scene.grid.zoom_out(factor), nodata=None), blocks


def _placement(card: ModelCard, settings: InferenceSettings) -> InferencePlacement:
    """Device and precision for the default ``distributed`` client's workers, or this machine."""
    from distributed import default_client

    try:
        client = default_client()
    except ValueError:
        client = None
    return model_placement(settings, card, client)


def _plan(
    scene: SceneArray,
    raw: da.Array,
    model: Model,
    settings: InferenceSettings,
    placement: InferencePlacement,
    probabilities: bool,
) -> PredictPlan:
    """The engine's plan over ``raw`` (the model's bands), sample windows read if needed."""
    grid = scene.grid
    label = f"xarray.DataArray {scene.data.name or ''}".strip()
    names = list(model.card.band_names)
    samples: dict[PixelWindow, Any] = {}
    if model.card.scaling.method == "scene_percentile":
        windows = sample_windows(grid)
        arrays = compute(*[raw[(slice(None), *window.slices())] for window in windows])
        samples = {
            window: window_values(np.asarray(array), scene.nodata)
            for window, array in zip(windows, arrays, strict=True)
        }
    plan = make_plan(
        WindowSource(grid, names, label, samples),
        model.directory,
        settings,
        placement,
        work_root=Path("."),  # no work directory: batches stay in the graph
        write_probabilities=probabilities,
    )
    return replace(plan, source=WindowSource(grid, names, label))


def _row_reads(plan: PredictPlan, indexes: Sequence[int]) -> list[Read]:
    """The windows :func:`geoseg.predict.forward.batch_inputs` reads: a tile row's union."""
    layout = plan.layout
    rows: dict[int, list[PixelWindow]] = {}
    for index in indexes:
        rows.setdefault(index // layout.columns, []).append(layout.window(index))
    reads = []
    for windows in rows.values():
        first = min(window.col for window in windows)
        width = max(window.col_stop for window in windows) - first
        union = PixelWindow(windows[0].row, first, layout.tile, width)
        reads.append(_boundless(union, plan.source.grid))
    return reads


def _graph(
    plan: PredictPlan,
    raw: da.Array,
    nodata: float | None,
    token: str,
    restrictions: Mapping[str, Any],
    chunk_size: int,
    probabilities: bool,
) -> da.Array:
    """The output array: forward tasks per batch, a chunk task per output chunk."""
    forward: list[Delayed] = []
    with annotate(**restrictions):
        for number, indexes in enumerate(plan.batches):
            reads = _row_reads(plan, indexes)
            inputs = [raw[(slice(None), *inside.slices())] for _, inside in reads]
            forward.append(
                delayed(_forward, pure=True)(
                    plan,
                    indexes,
                    reads,
                    nodata,
                    *inputs,
                    dask_key_name=f"geoseg-forward-{token}-{number}",
                )
            )
    by_window = {chunk.window: chunk for chunk in plan.chunks}
    body = _chunk_probabilities if probabilities else _chunk_labels
    dtype = np.float32 if probabilities else np.uint8
    bands = (plan.num_classes,) if probabilities else ()
    rows = []
    for row in plan.source.grid.chunk_rows(chunk_size):
        blocks = []
        for window in row:
            chunk = by_window[window]
            task = delayed(body, pure=True)(
                plan,
                window,
                [plan.batches[number] for number in chunk.batches],
                *[forward[number] for number in chunk.batches],
                dask_key_name=f"geoseg-chunk-{token}-{window.row}-{window.col}",
            )
            blocks.append(da.from_delayed(task, (*bands, *window.shape), dtype=dtype))
        rows.append(blocks)
    stacked: da.Array = da.block(rows)
    return stacked


def _coordinates(scene: SceneArray) -> dict[Hashable, Any]:
    """Pixel-centre ``y``/``x`` of the grid, and the input's scalar coordinates (``time``)."""
    grid = scene.grid
    transform = grid.transform
    kept: dict[Hashable, Any] = {
        name: coord
        for name, coord in scene.data.coords.items()
        if coord.ndim == 0 and name not in ("spatial_ref", "epsg", "band")
    }
    kept["y"] = transform.f + (np.arange(grid.height) + 0.5) * transform.e
    kept["x"] = transform.c + (np.arange(grid.width) + 0.5) * transform.a
    return kept


def _georeferenced(array: xr.DataArray, grid: RasterGrid) -> xr.DataArray:
    """``array`` with its CRS and transform in a ``spatial_ref`` coordinate (rioxarray, odc-geo)."""
    import rioxarray  # noqa: F401  # registers the .rio accessor

    located: xr.DataArray = array.rio.write_crs(grid.crs.to_wkt())
    transformed: xr.DataArray = located.rio.write_transform(grid.transform)
    return transformed


def segment(
    data: xr.DataArray | xr.Dataset,
    model: str | Path | Model,
    *,
    settings: InferenceSettings | None = None,
    probabilities: bool = False,
    bands: Mapping[str, Hashable] | None = None,
    nodata: float | None = None,
) -> xr.DataArray:
    """Segment a scene held in xarray; a lazy, Dask-backed result on the same grid.

    The tiling and blending are those of ``geoseg predict``: for the same
    pixels and settings the labels are the same bytes as its class map,
    whatever the chunking of ``data`` or ``settings.chunk_size``.

    Parameters
    ----------
    data
        The scene, from ``rioxarray.open_rasterio``, ``odc.stac.load`` (a
        Dataset of one variable per band), ``stackstac.stack`` or built by
        hand: ``y`` and ``x`` dimensions, a band dimension (``band``,
        ``variable``), a CRS, and length 1 along any other dimension (select
        one ``time``). Values in the units the model card expects; NaN and
        ``nodata`` are invalid pixels (label 255).
    model
        A shipped model name, a model directory or :func:`open_model`'s result.
    settings
        Tile, overlap, batch and chunk sizes, device and precision (default
        :class:`~geoseg.predict.settings.InferenceSettings()`: the card's tile
        and overlap, chunks of 2048 px). ``settings.chunk_size`` is the
        result's chunk size.
    probabilities
        Return the per-class probabilities instead of the labels: dimensions
        ``(class, y, x)``, float32 in [0, 1] with 1/255 steps (the values of
        ``geoseg predict --probabilities``), 0 where the input is invalid.
    bands
        ``{model band: label along the band dimension}`` when the array's band
        names are not the card's (e.g. ``{"blue": "B2", "green": "B3",
        "red": "B4", "nir": "B5"}``); by default bands are found by common
        name (a ``common_name`` coordinate, ``long_name`` descriptions such as
        ``B2_blue``, or the band labels).
    nodata
        Raw value of invalid pixels; default the array's ``nodata`` or
        ``_FillValue`` attribute.

    A model whose card says ``resampling: card_pixel_size`` reads a finer
    scene as block means of valid pixels at the card's pixel size (a 10 m
    scene for a 30 m card as 3 x 3 blocks), as ``geoseg predict`` does: the
    result is then on that zoomed grid (same origin, pixels ``factor`` times
    larger) and its ``GEOSEG_RESAMPLING`` attribute records the resampling.

    Returns
    -------
    xarray.DataArray
        ``(y, x)`` uint8 class ids, 255 where the input is invalid (attribute
        ``_FillValue``), or the probabilities; pixel-centre ``x``/``y``
        coordinates and a ``spatial_ref`` coordinate holding the CRS and
        transform (``.rio.crs``, ``.odc.geobox`` work), the class names in
        the ``GEOSEG_CLASS_NAMES`` attribute (``.rio.to_raster`` writes it as
        a tag ``geoseg vectorize`` reads).

    Raises
    ------
    GeosegError
        The array lacks a model band, a CRS or y/x dimensions, or every
        sampled pixel is invalid.

    Examples
    --------
    >>> scene = rioxarray.open_rasterio("zion.tif", chunks=1024)  # doctest: +SKIP
    >>> labels = geoseg.segment(scene, "landcover-landsat")  # doctest: +SKIP
    >>> labels.rio.to_raster("zion_classes.tif")  # doctest: +SKIP
    """
    settings = settings or InferenceSettings()
    chosen = model if isinstance(model, Model) else open_model(model)
    scene = scene_array(data, bands=bands, nodata=nodata)
    label = f"xarray.DataArray {scene.data.name or ''}".strip()
    positions = [
        index - 1 for index in resolve_band_indexes(label, chosen.card.band_names, scene.band_names)
    ]
    source = scene.data.data
    raw = source if isinstance(source, da.Array) else da.from_array(source, chunks=-1)
    raw = raw[positions]
    resampling = resampling_for(chosen.card, scene.grid)
    if resampling is not None and resampling.factor > 1:
        scene, raw = _zoomed(scene, raw, resampling.factor)
    placement = _placement(chosen.card, settings)
    plan = _plan(scene, raw, chosen, settings, placement, probabilities)
    token = tokenize(
        raw.name,
        plan.model,
        plan.layout,
        plan.statistics,
        plan.precision,
        plan.engine,
        settings.batch_size,
        settings.chunk_size,
        scene.nodata,
        probabilities,
    )
    graph = _graph(
        plan, raw, scene.nodata, token, placement.restrictions, settings.chunk_size, probabilities
    )
    names = {spec.id: spec.name for spec in chosen.card.classes}
    attrs: dict[str, str | int] = {
        CLASS_NAMES_TAG: format_class_names(names),
        MODEL_TAG: chosen.card.name,
    }
    if resampling is not None:
        attrs[RESAMPLING_TAG] = json.dumps(resampling.record(), sort_keys=True)
    coords = _coordinates(scene)
    if probabilities:
        coords["class"] = list(plan.class_ids)
        coords["class_name"] = ("class", [names[value] for value in plan.class_ids])
        result = xr.DataArray(
            graph, dims=("class", "y", "x"), coords=coords, attrs=attrs, name="probability"
        )
    else:
        attrs["_FillValue"] = LABEL_NODATA
        result = xr.DataArray(graph, dims=("y", "x"), coords=coords, attrs=attrs, name="class")
    return _georeferenced(result, scene.grid)
