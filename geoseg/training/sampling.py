"""Chips for training and validation, read window by window (never whole scenes).

A :class:`TrainingScene` is a scene of the training config resolved once:
files, image grid, band scaling, the label lookup, and the windows training
and validation may use. :func:`read_chip` reads one window of it as scaled
inputs ``(bands, H, W)`` and class *indexes* ``(H, W)`` (the position of each
class in the card), with :data:`IGNORE_INDEX` wherever no loss or metric may
look: image nodata, label nodata or unlisted codes, pixels outside every
labelled polygon, and pixels outside the region mask.

Dense labels on another grid are read onto the image grid with nearest
resampling (:func:`geoseg.io.warp.read_on_grid`); sparse labels are polygons
rasterised onto each chip's grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rasterio.features import rasterize

from geoseg.errors import InputError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.io.raster import read_info, read_window
from geoseg.io.training_data import (
    read_class_map,
    read_label_class_names,
    read_labelled_polygons,
)
from geoseg.io.warp import read_on_grid
from geoseg.models.card import InputScaling
from geoseg.predict.preprocess import (
    SceneStatistics,
    normalize,
    resolve_band_indexes,
    sample_windows,
    scene_statistics,
)
from geoseg.predict.sources import FileSource, ZoomedSource, zoom_factor
from geoseg.training.config import ClassMapRef, SceneSpec

IGNORE_INDEX = -1
"""Label index that the losses and metrics skip."""


@dataclass(frozen=True)
class TrainingScene:
    """One scene ready for chip reads (see the module docstring)."""

    source: FileSource | ZoomedSource
    scaling: InputScaling
    statistics: SceneStatistics | None
    dense_labels: Path | None
    code_to_index: dict[int, int]
    polygons: tuple[tuple[Any, int], ...]
    train_windows: tuple[PixelWindow, ...]
    validation_windows: tuple[PixelWindow, ...]
    region_mask: Path | None
    weight: float
    sensor: str = ""
    """The scene's sensor (the config's, else the image's ``sensor`` tag; '' unknown)."""
    region: str = ""

    @property
    def grid(self) -> RasterGrid:
        """The image grid."""
        return self.source.grid


def _resolve(path: str, root: Path) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else root / candidate


def class_map_codes(
    rows: list[dict[str, str]], reference: ClassMapRef, label_source: str
) -> dict[str, int]:
    """``{label name: class id}`` of one site from class-map ``rows`` (see :class:`ClassMapRef`).

    Raises
    ------
    InputError
        The site has no row, or the column is missing.
    """
    site_rows = [row for row in rows if row["site"] == reference.site]
    if not site_rows:
        sites = sorted({row["site"] for row in rows})
        raise InputError(
            f"{reference.path}: no rows for site {reference.site!r} (for {label_source}); "
            f"sites: {sites}"
        )
    if reference.column not in site_rows[0]:
        raise InputError(
            f"{reference.path}: no column {reference.column!r}; columns: {list(site_rows[0])}"
        )
    return {
        row["class"]: reference.values[row[reference.column]]
        for row in site_rows
        if row[reference.column] in reference.values
    }


def open_scene_source(
    image: Path,
    band_names: list[str],
    band_indexes: list[int] | None,
    pixel_size_m: float | None,
) -> FileSource | ZoomedSource:
    """The scene's bands in card order, read at ``pixel_size_m`` (None: native pixels).

    Bands come from ``band_indexes`` or, without them, by name (the bands'
    ``common_name`` tags, else their descriptions).
    """
    if band_indexes is None:
        named = FileSource.open(image)
        band_indexes = resolve_band_indexes(str(image), band_names, named.band_names)
    source = FileSource.open(image, band_map=dict(zip(band_names, band_indexes, strict=True)))
    if pixel_size_m is None:
        return source
    factor = zoom_factor(source.grid, pixel_size_m)
    return source if factor == 1 else ZoomedSource(source, factor)


def point_sized(geometry: Any, grid: RasterGrid) -> Any:
    """``geometry``, or its centroid when it is smaller than a pixel of ``grid``."""
    width, height = grid.resolution
    return geometry.centroid if geometry.area < abs(width * height) else geometry


def prepare_scene(
    spec: SceneSpec,
    band_names: list[str],
    class_ids: list[int],
    scaling: InputScaling,
    root: Path,
    *,
    pixel_size_m: float | None = None,
) -> TrainingScene:
    """Resolve a scene of the config: open metadata, compute its scene statistics, read polygons.

    The inputs are read and scaled exactly as ``geoseg predict`` does
    (:class:`geoseg.predict.sources.FileSource`, :func:`geoseg.predict.preprocess.scene_statistics`
    over the same sample lattice, :func:`geoseg.predict.preprocess.normalize`).

    Parameters
    ----------
    spec
        The scene's config.
    band_names
        The card's band names, in model order (``spec.band_indexes`` gives their indexes).
    class_ids
        Card class ids in output-channel order.
    scaling
        The card's input scaling.
    root
        Directory that relative paths are relative to.
    pixel_size_m
        Read finer scenes at this pixel size (:class:`ZoomedSource`); None: native.

    Raises
    ------
    InputError
        A band index past the image's band count (:class:`BandMismatchError`),
        or a window outside the image.
    """
    image = _resolve(spec.image, root)
    source = open_scene_source(image, band_names, spec.band_indexes, pixel_size_m)
    named: dict[str, int] = {}
    if spec.class_map is not None:
        rows = read_class_map(_resolve(spec.class_map.path, root))
        named = class_map_codes(rows, spec.class_map, str(image))
    statistics = None
    if scaling.method == "scene_percentile":
        samples = [source.read(window) for window in sample_windows(source.grid)]
        statistics = scene_statistics(str(image), samples, scaling.percentiles)
    index_of = {class_id: index for index, class_id in enumerate(class_ids)}
    code_to_index: dict[int, int] = {}
    polygons: list[tuple[Any, int]] = []
    dense = None
    if spec.dense_labels is not None:
        dense = _resolve(spec.dense_labels.path, root)
        codes = spec.dense_labels.codes or {class_id: class_id for class_id in class_ids}
        if spec.class_map is not None:
            codes = {
                code: named[name]
                for code, name in read_label_class_names(dense).items()
                if name in named
            }
        code_to_index = {code: index_of[class_id] for code, class_id in codes.items()}
    elif spec.sparse_labels is not None:
        labels = spec.sparse_labels
        shapes = read_labelled_polygons(
            _resolve(labels.path, root), labels.field, source.grid.crs, layer=labels.layer
        )
        value_codes = labels.codes or named
        polygons = [
            (point_sized(geometry, source.grid), index_of[value_codes[value]])
            for geometry, value in shapes
            if value in value_codes
        ]
    grid = source.grid
    full = grid.full_window
    train = [item.to_window() for item in spec.train_windows] if spec.train_windows else [full]
    validation = [item.to_window() for item in spec.validation_windows]
    for window in [*train, *validation]:
        if window.clip(grid.height, grid.width) != window:
            raise InputError(f"{image}: window {window} lies outside the {grid.shape} image")
    return TrainingScene(
        source=source,
        scaling=scaling,
        statistics=statistics,
        dense_labels=dense,
        code_to_index=code_to_index,
        polygons=tuple(polygons),
        train_windows=tuple(train),
        validation_windows=tuple(validation),
        region_mask=_resolve(spec.region_mask, root) if spec.region_mask else None,
        weight=spec.weight,
        sensor=spec.sensor or read_info(image).tags.get("sensor", ""),
        region=spec.region,
    )


def lookup_codes(codes: NDArray[Any], code_to_index: dict[int, int]) -> NDArray[np.int64]:
    """Class indexes of label ``codes`` (:data:`IGNORE_INDEX` for unlisted codes)."""
    indexes = np.full(codes.shape, IGNORE_INDEX, dtype=np.int64)
    for code, index in code_to_index.items():
        indexes[codes == code] = index
    return indexes


def rasterize_polygons(
    polygons: tuple[tuple[Any, int], ...], grid: RasterGrid, window: PixelWindow
) -> NDArray[np.int64]:
    """Burn ``(geometry, class index)`` pairs onto ``window`` of ``grid``.

    Pixels whose centre lies in no polygon get :data:`IGNORE_INDEX`; where
    polygons overlap, the later one wins.
    """
    if not polygons:
        return np.full(window.shape, IGNORE_INDEX, dtype=np.int64)
    burned: NDArray[np.int32] = rasterize(
        [(geometry, index) for geometry, index in polygons],
        out_shape=window.shape,
        transform=grid.window_transform(window),
        fill=IGNORE_INDEX,
        dtype="int32",
    )
    return burned.astype(np.int64)


def read_inputs(
    scene: TrainingScene, window: PixelWindow
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Scaled model inputs ``(bands, H, W)`` of ``window`` and their validity ``(H, W)``."""
    physical, valid = scene.source.read(window)
    return normalize(physical, valid, scene.scaling, scene.statistics), valid


def read_chip(
    scene: TrainingScene, window: PixelWindow
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Scaled inputs ``(bands, H, W)`` and class indexes ``(H, W)`` of ``window``."""
    inputs, valid = read_inputs(scene, window)
    return inputs, _labels(scene, window, valid)


def read_labels(scene: TrainingScene, window: PixelWindow) -> NDArray[np.int64]:
    """The class indexes of :func:`read_chip` alone (inputs read only for their validity)."""
    _, valid = scene.source.read(window)
    return _labels(scene, window, valid)


def _labels(
    scene: TrainingScene, window: PixelWindow, valid: NDArray[np.bool_]
) -> NDArray[np.int64]:
    if scene.dense_labels is not None:
        codes, labelled = read_on_grid(scene.dense_labels, scene.grid, window)
        labels = lookup_codes(codes, scene.code_to_index)
        labels[~labelled] = IGNORE_INDEX
    else:
        labels = rasterize_polygons(scene.polygons, scene.grid, window)
    labels[~valid] = IGNORE_INDEX
    if scene.region_mask is not None:
        allowed = read_window(scene.region_mask, window, bands=[1], fill_value=0)[0] != 0
        labels[~allowed] = IGNORE_INDEX
    return labels


def random_chip_window(
    scene: TrainingScene, chip_size: int, generator: np.random.Generator
) -> PixelWindow:
    """A chip drawn uniformly from the scene's training windows (weighted by area)."""
    windows = scene.train_windows
    areas = np.array(
        [max(1, w.height - chip_size + 1) * max(1, w.width - chip_size + 1) for w in windows],
        dtype=float,
    )
    window = windows[int(generator.choice(len(windows), p=areas / areas.sum()))]
    row = _chip_start(window.row, window.height, chip_size, generator)
    col = _chip_start(window.col, window.width, chip_size, generator)
    return PixelWindow(row, col, chip_size, chip_size)


def _chip_start(start: int, length: int, chip_size: int, generator: np.random.Generator) -> int:
    """A chip start inside a window, or, where the window is smaller, around all of it."""
    if length >= chip_size:
        return start + int(generator.integers(0, length - chip_size + 1))
    return start + length - chip_size + int(generator.integers(0, chip_size - length + 1))


def _chip_range(start: int, stop: int, chip_size: int, pixel: int) -> tuple[int, int]:
    """First and last chip starts holding ``pixel``, inside (or around) ``start:stop``."""
    first, last = sorted((start, stop - chip_size))
    return max(first, pixel - chip_size + 1), min(last, pixel)


def random_chips(
    scenes: list[TrainingScene], count: int, chip_size: int, generator: np.random.Generator
) -> list[tuple[TrainingScene, PixelWindow]]:
    """``count`` chips: a scene drawn by weight, then a window inside its training area."""
    weights = np.array([scene.weight for scene in scenes], dtype=float)
    picks = generator.choice(len(scenes), size=count, p=weights / weights.sum())
    return [
        (scenes[int(pick)], random_chip_window(scenes[int(pick)], chip_size, generator))
        for pick in picks
    ]


@dataclass(frozen=True)
class ClassPixels:
    """Where each class lies in a scene's training windows.

    ``per_class[index]`` is an ``(N, 3)`` int64 array of ``(training window
    number, row, col)`` of every training pixel labelled with class ``index``.
    """

    per_class: tuple[NDArray[np.int64], ...]

    @property
    def counts(self) -> NDArray[np.int64]:
        """Training pixels per class index."""
        return np.array([len(pixels) for pixels in self.per_class], dtype=np.int64)


def index_class_pixels(scene: TrainingScene, num_classes: int, *, tile: int = 512) -> ClassPixels:
    """Read the labels of the scene's training windows once and locate every class."""
    found: list[list[NDArray[np.int64]]] = [[] for _ in range(num_classes)]
    for number, window in enumerate(scene.train_windows):
        for row in range(window.row, window.row_stop, tile):
            for col in range(window.col, window.col_stop, tile):
                part = PixelWindow(row, col, tile, tile).intersection(window)
                labels = read_labels(scene, part)
                for index in range(num_classes):
                    rows, cols = np.nonzero(labels == index)
                    if rows.size:
                        found[index].append(
                            np.stack(
                                [np.full(rows.size, number), rows + part.row, cols + part.col],
                                axis=1,
                            ).astype(np.int64)
                        )
    return ClassPixels(
        tuple(
            np.concatenate(parts) if parts else np.empty((0, 3), dtype=np.int64) for parts in found
        )
    )


def class_balanced_chip_window(
    scene: TrainingScene,
    pixels: ClassPixels,
    chip_size: int,
    power: float,
    generator: np.random.Generator,
) -> PixelWindow:
    """A chip inside a training window that contains a pixel of a randomly drawn class.

    The class is drawn with probability proportional to its training-pixel
    count to the power ``power`` (classes without pixels never), the pixel
    uniformly among that class's pixels, and the chip's position uniformly
    among the positions that contain the pixel and stay inside its window.
    """
    counts = pixels.counts
    if not counts.any():
        return random_chip_window(scene, chip_size, generator)
    chances = np.where(counts > 0, counts.astype(float) ** power, 0.0)
    index = int(generator.choice(len(counts), p=chances / chances.sum()))
    number, row, col = pixels.per_class[index][int(generator.integers(0, counts[index]))]
    window = scene.train_windows[int(number)]
    low, high = _chip_range(window.row, window.row_stop, chip_size, int(row))
    top = int(generator.integers(low, high + 1))
    low, high = _chip_range(window.col, window.col_stop, chip_size, int(col))
    left = int(generator.integers(low, high + 1))
    return PixelWindow(top, left, chip_size, chip_size)


def class_balanced_chips(
    scenes: list[TrainingScene],
    pixels: list[ClassPixels],
    count: int,
    chip_size: int,
    power: float,
    generator: np.random.Generator,
) -> list[tuple[TrainingScene, PixelWindow]]:
    """``count`` chips: a scene drawn by weight, then :func:`class_balanced_chip_window`."""
    weights = np.array([scene.weight for scene in scenes], dtype=float)
    picks = generator.choice(len(scenes), size=count, p=weights / weights.sum())
    return [
        (
            scenes[int(pick)],
            class_balanced_chip_window(
                scenes[int(pick)], pixels[int(pick)], chip_size, power, generator
            ),
        )
        for pick in picks
    ]


def validation_chips(
    scenes: list[TrainingScene], chip_size: int
) -> list[tuple[TrainingScene, PixelWindow, PixelWindow]]:
    """Full-size chips tiling every validation window: ``(scene, chip, window)``.

    Chips at the far edges run past their window; read them with
    :func:`read_validation_chip`, which ignores the pixels outside it, so each
    validation pixel is counted exactly once.
    """
    chips: list[tuple[TrainingScene, PixelWindow, PixelWindow]] = []
    for scene in scenes:
        for window in scene.validation_windows:
            for row in range(window.row, window.row_stop, chip_size):
                for col in range(window.col, window.col_stop, chip_size):
                    chips.append((scene, PixelWindow(row, col, chip_size, chip_size), window))
    return chips


def read_validation_chip(
    scene: TrainingScene, chip: PixelWindow, window: PixelWindow
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """:func:`read_chip`, with labels outside ``window`` ignored."""
    inputs, labels = read_chip(scene, chip)
    inside = chip.intersection(window).shift(-chip.row, -chip.col)
    keep = np.zeros(chip.shape, dtype=bool)
    keep[inside.slices()] = True
    labels[~keep] = IGNORE_INDEX
    return inputs, labels
