"""Instances from overlapping tiles: one object, one instance, whatever the chunking.

Tiles lie on the global grid of :mod:`geoseg.predict.tiling`; a detector sees
each tile alone, so an object cut by a tile edge is detected whole in one tile
and as a fragment (or again whole) in its neighbour. The rules here:

1. **Detections** (:class:`Detection`) are a tile's objects in scene pixels:
   class, score, and the mask cropped to its bounding box (inside the scene).
2. **Matching** (:func:`resolve_instances`): two detections of neighbouring
   tiles are the same object when the IoU of their masks inside the band the
   two tiles share is at least ``match_iou``; matches are joined transitively
   (union-find), so an object across several seams is one instance.
3. **Ownership**: every pixel has one owner tile, the tile whose centre region
   holds it (tile boundaries in the middle of each overlap). An instance's
   pixel is set by its member detection of the owner tile when there is one
   (so seams are invisible), otherwise by the union of its members.
4. **Overlaps between instances** go to the higher score (ties: the instance
   found first in row-major order of its bounding box).
5. **Ids** are 1, 2, ... in row-major order of the bounding boxes of the
   instances with at least one pixel left.

Everything is decided from the tiles' detections alone, before any chunk is
painted; :func:`paint_window` then paints any window, so the raster and the
polygons do not depend on the chunk size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray

from geoseg.errors import ConfigError
from geoseg.grid import PixelWindow
from geoseg.predict.tiling import TileLayout


@dataclass(frozen=True, slots=True)
class InstanceSettings:
    """How detections become instances; defaults written once, checked on creation."""

    min_score: float = 0.5
    """Detections scoring less are dropped."""
    mask_threshold: float = 0.5
    """A pixel belongs to a detection's mask when its mask probability is at least this."""
    match_iou: float = 0.3
    """Detections of two tiles are one object when their IoU in the shared band reaches this."""

    def __post_init__(self) -> None:
        for name in ("min_score", "mask_threshold", "match_iou"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"{name} must be in (0, 1], got {value}")


@dataclass(frozen=True, slots=True, eq=False)
class Detection:
    """One object seen in one tile: ``mask`` covers ``window`` (scene pixels)."""

    tile: int
    class_index: int
    score: float
    window: PixelWindow
    mask: NDArray[np.bool_]


@dataclass(frozen=True, slots=True, eq=False)
class Instance:
    """One object of the scene: its detections, class (card position), score and extent."""

    id: int
    class_index: int
    score: float
    window: PixelWindow
    members: tuple[Detection, ...]


def detections_from_masks(
    layout: TileLayout,
    tile: int,
    masks: NDArray[np.float32],
    scores: NDArray[np.float32],
    class_indexes: NDArray[np.int64],
    settings: InstanceSettings,
) -> list[Detection]:
    """A tile's detections from full-tile mask probabilities ``(N, tile, tile)``.

    Detections below ``settings.min_score``, and masks with no pixel inside
    the scene, are dropped; masks are cropped to their bounding box.
    """
    window = layout.window(tile)
    inside = window.clip(layout.height, layout.width)
    local = inside.shift(-window.row, -window.col)
    found: list[Detection] = []
    for mask, score, class_index in zip(masks, scores, class_indexes, strict=True):
        if float(score) < settings.min_score:
            continue
        binary = mask[local.slices()] >= settings.mask_threshold
        rows = np.flatnonzero(binary.any(axis=1))
        cols = np.flatnonzero(binary.any(axis=0))
        if rows.size == 0:
            continue
        box = PixelWindow(
            int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
        )
        found.append(
            Detection(
                tile=tile,
                class_index=int(class_index),
                score=float(score),
                window=box.shift(inside.row, inside.col),
                mask=np.ascontiguousarray(binary[box.slices()]),
            )
        )
    return found


def owner_bounds(origins: tuple[int, ...], tile: int) -> NDArray[np.int64]:
    """Per axis, where each tile's owned span ends: the middle of each overlap."""
    ends = [(origins[i + 1] + origins[i] + tile) // 2 for i in range(len(origins) - 1)]
    return np.array(ends, dtype=np.int64)


def owner_tiles(layout: TileLayout, window: PixelWindow) -> NDArray[np.int64]:
    """The owner tile index of every pixel of ``window``."""
    row_bounds = owner_bounds(layout.row_origins, layout.tile)
    col_bounds = owner_bounds(layout.col_origins, layout.tile)
    rows = np.searchsorted(row_bounds, np.arange(window.row, window.row_stop), side="right")
    cols = np.searchsorted(col_bounds, np.arange(window.col, window.col_stop), side="right")
    return rows[:, None] * layout.columns + cols[None, :]


def _placed(detection: Detection, window: PixelWindow) -> NDArray[np.bool_]:
    """The detection's mask on ``window`` (False outside the mask's box)."""
    out = np.zeros(window.shape, dtype=bool)
    common = detection.window.intersection(window)
    if not common.is_empty:
        out[common.shift(-window.row, -window.col).slices()] = detection.mask[
            common.shift(-detection.window.row, -detection.window.col).slices()
        ]
    return out


def band_iou(first: Detection, second: Detection, layout: TileLayout) -> float:
    """IoU of two detections' masks inside the band their two tiles share."""
    band = layout.window(first.tile).intersection(layout.window(second.tile))
    box = first.window.intersection(second.window).intersection(band)
    if box.is_empty:
        return 0.0
    union_box = _bounding(first.window, second.window).intersection(band)
    a = _placed(first, union_box)
    b = _placed(second, union_box)
    union = int(np.count_nonzero(a | b))
    return int(np.count_nonzero(a & b)) / union if union else 0.0


def _bounding(first: PixelWindow, second: PixelWindow) -> PixelWindow:
    row, col = min(first.row, second.row), min(first.col, second.col)
    return PixelWindow(
        row,
        col,
        max(first.row_stop, second.row_stop) - row,
        max(first.col_stop, second.col_stop) - col,
    )


def _find(parents: list[int], item: int) -> int:
    while parents[item] != item:
        parents[item] = parents[parents[item]]
        item = parents[item]
    return item


def _neighbours(layout: TileLayout, tile: int) -> list[int]:
    """Tiles after ``tile`` in row-major order whose windows overlap it.

    With an overlap under half a tile only tiles up to two steps away can
    overlap (the last tile of an axis is snapped onto the border).
    """
    row, col = divmod(tile, layout.columns)
    found = []
    for other_row in range(row, min(layout.rows, row + 3)):
        first = max(0, col - 2) if other_row > row else col + 1
        for other_col in range(first, min(layout.columns, col + 3)):
            other = other_row * layout.columns + other_col
            if not layout.window(tile).intersection(layout.window(other)).is_empty:
                found.append(other)
    return found


def resolve_instances(
    layout: TileLayout, detections: Sequence[Detection], settings: InstanceSettings
) -> list[Instance]:
    """The scene's instances from every tile's detections (see the module docstring)."""
    ordered = sorted(
        detections, key=lambda d: (d.tile, d.window.row, d.window.col, -d.score, d.class_index)
    )
    by_tile: dict[int, list[int]] = {}
    for position, detection in enumerate(ordered):
        by_tile.setdefault(detection.tile, []).append(position)
    parents = list(range(len(ordered)))
    for tile, positions in by_tile.items():
        for other in _neighbours(layout, tile):
            for first in positions:
                for second in by_tile.get(other, []):
                    a, b = ordered[first], ordered[second]
                    if a.class_index != b.class_index or a.window.intersection(b.window).is_empty:
                        continue
                    if band_iou(a, b, layout) >= settings.match_iou:
                        parents[_find(parents, second)] = _find(parents, first)
    groups: dict[int, list[Detection]] = {}
    for position, detection in enumerate(ordered):
        groups.setdefault(_find(parents, position), []).append(detection)
    candidates = []
    for members in groups.values():
        window = members[0].window
        for member in members[1:]:
            window = _bounding(window, member.window)
        best = max(members, key=lambda d: d.score)
        candidates.append(Instance(0, best.class_index, best.score, window, tuple(members)))
    candidates.sort(key=lambda i: (i.window.row, i.window.col, -i.score, i.window.shape))
    provisional = [_renumbered(instance, number + 1) for number, instance in enumerate(candidates)]
    near = InstanceIndex(provisional)
    kept = [
        instance
        for instance in provisional
        if np.any(paint_window(layout, near(instance.window), instance.window)[0] == instance.id)
    ]
    return [_renumbered(instance, number + 1) for number, instance in enumerate(kept)]


class InstanceIndex:
    """The instances whose boxes touch a window, found through an R-tree of their boxes."""

    def __init__(self, instances: Sequence[Instance]) -> None:
        self._instances = list(instances)
        boxes = [
            shapely.box(i.window.col, i.window.row, i.window.col_stop, i.window.row_stop)
            for i in self._instances
        ]
        self._tree = shapely.STRtree(boxes)

    def __call__(self, window: PixelWindow) -> list[Instance]:
        """Instances whose boxes intersect ``window``, in list order."""
        query = shapely.box(window.col, window.row, window.col_stop, window.row_stop)
        hits = sorted(int(i) for i in self._tree.query(query, predicate="intersects"))
        return [
            self._instances[i]
            for i in hits
            if not self._instances[i].window.intersection(window).is_empty
        ]


def _renumbered(instance: Instance, new_id: int) -> Instance:
    return Instance(new_id, instance.class_index, instance.score, instance.window, instance.members)


def instance_mask(layout: TileLayout, instance: Instance, window: PixelWindow) -> NDArray[np.bool_]:
    """The pixels of ``window`` that ``instance`` claims (before overlaps with others)."""
    region = instance.window.intersection(window)
    out = np.zeros(window.shape, dtype=bool)
    if region.is_empty:
        return out
    owners = owner_tiles(layout, region)
    member_tiles = np.array(sorted({member.tile for member in instance.members}))
    owned = np.zeros(region.shape, dtype=bool)
    union = np.zeros(region.shape, dtype=bool)
    for member in instance.members:
        placed = _placed(member, region)
        owned |= placed & (owners == member.tile)
        union |= placed
    claimed = owned | (union & ~np.isin(owners, member_tiles))
    out[region.shift(-window.row, -window.col).slices()] = claimed
    return out


def paint_window(
    layout: TileLayout, instances: Sequence[Instance], window: PixelWindow
) -> tuple[NDArray[np.uint32], NDArray[np.uint32]]:
    """Instance ids and class indexes + 1 of ``window`` (0: no instance).

    ``instances`` are those :func:`resolve_instances` returned, or at least all
    of them touching ``window`` (:class:`InstanceIndex`): higher scores are
    painted over lower ones, ties by id.
    """
    ids = np.zeros(window.shape, dtype=np.uint32)
    classes = np.zeros(window.shape, dtype=np.uint32)
    touching = [i for i in instances if not i.window.intersection(window).is_empty]
    for instance in sorted(touching, key=lambda i: (i.score, -i.id)):
        claimed = instance_mask(layout, instance, window)
        ids[claimed] = instance.id
        classes[claimed] = instance.class_index + 1
    return ids, classes
