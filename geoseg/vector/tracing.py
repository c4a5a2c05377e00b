"""Outlines of the 4-connected regions of a label raster, traced pixel edge by pixel edge.

:func:`trace_regions` does what GDAL's polygonizer (``rasterio.features.shapes``
with ``connectivity=4``) does, polygon for polygon and vertex for vertex, but
returns flat coordinate and offset arrays instead of one GeoJSON mapping per
polygon, plus what a chunked vectorizer needs next: the region id of every
pixel, each region's class and pixel count.

Conventions (the same as GDAL's):

- a region is a maximal 4-connected set of masked pixels of one value;
- vertices are pixel corners ``(x, y) = (column, row)`` and only corners where
  the outline turns are kept (no collinear vertices);
- each region is one polygon: its exterior ring first, then one ring per hole;
- where two pixels of one region touch only diagonally, the rings pass that
  corner as if they were joined (the region is connected elsewhere anyway), so
  a hole that touches the exterior or another hole at a corner is a ring of its
  own and every ring is simple (valid in the OGC sense).

The loops run under numba (compiled on first use and cached on disk); a
4096 x 4096 chunk of a forest mask takes about 0.2 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geoseg.jit import compiled
from geoseg.vector.ragged import RaggedPolygons, offsets


@dataclass(frozen=True)
class RegionOutlines:
    """The traced regions of one label raster, as flat arrays.

    Regions are numbered 0, 1, ... in raster order of their first pixel.

    Attributes
    ----------
    region_ids
        ``int32`` raster of the input's shape: the region of each pixel, -1
        where the mask is False.
    values
        The label value of each region.
    pixel_counts
        The number of pixels of each region (its area in pixel units).
    polygons
        One polygon per region, in region order, in flat arrays: vertices
        ``(x, y)`` in float64, every ring closed, the exterior first.
    """

    region_ids: NDArray[np.int32]
    values: NDArray[Any]
    pixel_counts: NDArray[np.int64]
    polygons: RaggedPolygons

    def __len__(self) -> int:
        return len(self.values)


@compiled
def _find(parent: NDArray[np.int32], index: int) -> int:
    while parent[index] != index:
        parent[index] = parent[parent[index]]  # path halving
        index = parent[index]
    return index


@compiled
def _label_regions(labels: NDArray[Any], mask: NDArray[np.bool_]) -> tuple[NDArray[np.int32], int]:
    """Region id of every pixel (-1 outside the mask) and the number of regions.

    A union-find over pixels: each pixel joins its left and upper neighbour
    when both are masked and hold the same value; roots are the smallest flat
    index, so numbering roots in raster order numbers regions by first pixel.
    """
    height, width = labels.shape
    parent = np.empty(height * width, dtype=np.int32)
    for row in range(height):
        base = row * width
        for col in range(width):
            index = base + col
            parent[index] = index
            if not mask[row, col]:
                continue
            value = labels[row, col]
            joined_left = col > 0 and mask[row, col - 1] and labels[row, col - 1] == value
            if joined_left:
                parent[index] = parent[index - 1]
            if row == 0 or not mask[row - 1, col] or labels[row - 1, col] != value:
                continue
            if joined_left and mask[row - 1, col - 1] and labels[row - 1, col - 1] == value:
                continue  # the pixel up-left already joined the left one to the upper run
            upper = _find(parent, index - width)
            own = _find(parent, index)
            if upper < own:
                parent[own] = upper
            elif own < upper:
                parent[upper] = own
    # every parent precedes its child in raster order, so one pass finds the roots
    region_ids = np.full((height, width), -1, dtype=np.int32)
    count = 0
    for row in range(height):
        base = row * width
        for col in range(width):
            if not mask[row, col]:
                continue
            index = base + col
            root = parent[parent[index]]
            parent[index] = root
            if root == index:
                region_ids[row, col] = count
                count += 1
            else:
                region_ids[row, col] = region_ids[root // width, root % width]
    return region_ids, count


@compiled
def _region_stats(
    labels: NDArray[Any], region_ids: NDArray[np.int32], count: int
) -> tuple[NDArray[Any], NDArray[np.int64]]:
    """The value and pixel count of every region."""
    values = np.zeros(count, dtype=labels.dtype)
    counts = np.zeros(count, dtype=np.int64)
    height, width = labels.shape
    for row in range(height):
        for col in range(width):
            region = region_ids[row, col]
            if region >= 0:
                if counts[region] == 0:
                    values[region] = labels[row, col]
                counts[region] += 1
    return values, counts


@compiled
def _inside(region_ids: NDArray[np.int32], row: int, col: int, region: int) -> bool:
    height, width = region_ids.shape
    return 0 <= row < height and 0 <= col < width and bool(region_ids[row, col] == region)


@compiled
def _trace_rings(
    region_ids: NDArray[np.int32], count: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Every ring as vertex columns/rows (closed), with its region, in discovery order.

    Rings are walked with their region on the right-hand side (x to the right,
    y down), starting from a pixel's top edge not walked yet, found in raster
    order: a region's first ring found is its exterior (the top edge of its
    first pixel), every later one a hole. Headings: 0 east, 1 south, 2 west,
    3 north; at each corner the walk turns left when the pixel ahead-left
    belongs to the region (also when only diagonally: the region is connected
    elsewhere), goes straight when only the pixel ahead-right does, and turns
    right otherwise.
    """
    height, width = region_ids.shape
    walked_top = np.zeros((height, width), dtype=np.bool_)
    capacity = 1024
    xs = np.empty(capacity, dtype=np.int64)
    ys = np.empty(capacity, dtype=np.int64)
    ring_starts = [0]
    ring_regions = [0]
    ring_regions.pop()
    size = 0
    for row in range(height):
        for col in range(width):
            region = region_ids[row, col]
            if region < 0 or walked_top[row, col]:
                continue
            if row > 0 and region_ids[row - 1, col] == region:
                continue  # not a top edge
            x, y, heading = col, row, 0
            ring_start = size
            while True:
                if heading == 0:
                    walked_top[y, x] = True
                    x += 1
                elif heading == 1:
                    y += 1
                elif heading == 2:
                    x -= 1
                else:
                    y -= 1
                if heading == 0:
                    ahead_left = _inside(region_ids, y - 1, x, region)
                    ahead_right = _inside(region_ids, y, x, region)
                elif heading == 1:
                    ahead_left = _inside(region_ids, y, x, region)
                    ahead_right = _inside(region_ids, y, x - 1, region)
                elif heading == 2:
                    ahead_left = _inside(region_ids, y, x - 1, region)
                    ahead_right = _inside(region_ids, y - 1, x - 1, region)
                else:
                    ahead_left = _inside(region_ids, y - 1, x - 1, region)
                    ahead_right = _inside(region_ids, y - 1, x, region)
                if ahead_left:
                    turn = 3
                elif ahead_right:
                    turn = 0
                else:
                    turn = 1
                if turn != 0:
                    if size + 1 >= capacity:
                        capacity *= 2
                        grown_x = np.empty(capacity, dtype=np.int64)
                        grown_y = np.empty(capacity, dtype=np.int64)
                        grown_x[:size] = xs[:size]
                        grown_y[:size] = ys[:size]
                        xs, ys = grown_x, grown_y
                    xs[size] = x
                    ys[size] = y
                    size += 1
                    heading = (heading + turn) % 4
                if x == col and y == row and heading == 0:
                    break
            # close the ring (its first corner repeated)
            if size + 1 >= capacity:
                capacity *= 2
                grown_x = np.empty(capacity, dtype=np.int64)
                grown_y = np.empty(capacity, dtype=np.int64)
                grown_x[:size] = xs[:size]
                grown_y[:size] = ys[:size]
                xs, ys = grown_x, grown_y
            xs[size] = xs[ring_start]
            ys[size] = ys[ring_start]
            size += 1
            ring_starts.append(size)
            ring_regions.append(region)
    coordinates = np.empty((size, 2), dtype=np.int64)
    coordinates[:, 0] = xs[:size]
    coordinates[:, 1] = ys[:size]
    return coordinates, np.asarray(ring_starts, dtype=np.int64), np.asarray(ring_regions)


def trace_regions(
    labels: NDArray[Any],
    mask: NDArray[np.bool_],
    offset: tuple[int, int] = (0, 0),
) -> RegionOutlines:
    """Polygon outlines of the 4-connected regions of ``labels`` where ``mask`` is True.

    Parameters
    ----------
    labels
        2-D integer (or bool) raster.
    mask
        Pixels to polygonize, same shape.
    offset
        ``(row, col)`` added to every vertex (a chunk's place in its raster).
    """
    if labels.ndim != 2 or mask.shape != labels.shape:
        raise ValueError(
            f"labels must be 2-D and mask of the same shape, got {labels.shape} and {mask.shape}"
        )
    if labels.dtype == np.bool_:
        labels = labels.view(np.uint8)
    if labels.size >= 2**31:
        raise ValueError(f"a raster of {labels.shape} px is too large to trace at once; chunk it")
    labels = np.ascontiguousarray(labels)
    region_ids, count = _label_regions(labels, np.ascontiguousarray(mask))
    values, pixel_counts = _region_stats(labels, region_ids, count)
    vertices, ring_ends, ring_regions = _trace_rings(region_ids, count)
    # group rings by region; a stable sort keeps each region's exterior first
    order = np.argsort(ring_regions, kind="stable")
    lengths = np.diff(ring_ends)[order]
    starts = ring_ends[:-1][order]
    # each ring reversed on the way: GDAL's orientation (exteriors clockwise, holes
    # counter-clockwise in x, y), which geodesic areas rely on (signed ring areas)
    ends = starts + lengths - 1
    gather = np.repeat(ends + np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    gather -= np.arange(int(lengths.sum()))
    coordinates = vertices[gather].astype(np.float64)
    coordinates[:, 0] += offset[1]
    coordinates[:, 1] += offset[0]
    rings_per_region = np.bincount(ring_regions, minlength=count)
    polygons = RaggedPolygons(coordinates, offsets(lengths), offsets(rings_per_region))
    return RegionOutlines(region_ids, values, pixel_counts, polygons)
