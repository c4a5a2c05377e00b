"""Polygons as flat arrays: coordinates plus ring and polygon offsets.

The layout is shapely's (and GeoArrow's) ragged-array layout: one ``(n, 2)``
coordinate array holding every closed ring one after the other, ``ring_offsets``
where each ring starts (one more entry than rings), ``polygon_offsets`` where
each polygon's rings start (one more entry than polygons; a polygon's first
ring is its exterior). Tracing, seam joining and shipping pieces between Dask
workers all work on this layout; shapely objects are built once, at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray

from geoseg.jit import compiled

GeometryArray = NDArray[np.object_]


def ranges(starts: NDArray[np.int64], lengths: NDArray[np.int64]) -> NDArray[np.int64]:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])``, vectorized."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(np.asarray(starts, dtype=np.int64), lengths) + within


@compiled
def _copy_ranges(
    source: NDArray[np.float64], starts: NDArray[np.int64], lengths: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Rows ``source[start:start + length]`` for every pair, one after the other."""
    total = 0
    for length in lengths:
        total += length
    copied = np.empty((total, source.shape[1]), dtype=source.dtype)
    position = 0
    for index in range(len(starts)):
        length = lengths[index]
        copied[position : position + length] = source[starts[index] : starts[index] + length]
        position += length
    return copied


def offsets(lengths: NDArray[np.int64]) -> NDArray[np.int64]:
    """Offsets (a leading 0, then the running total) of consecutive runs of ``lengths``."""
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64)


@dataclass(frozen=True)
class RaggedPolygons:
    """Polygons in flat arrays (see the module docstring for the layout)."""

    coordinates: NDArray[np.float64]
    ring_offsets: NDArray[np.int64]
    polygon_offsets: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.polygon_offsets) - 1

    @property
    def ring_lengths(self) -> NDArray[np.int64]:
        """Vertices per ring (closing vertex included)."""
        return np.diff(self.ring_offsets)

    @property
    def ring_counts(self) -> NDArray[np.int64]:
        """Rings per polygon (exterior included)."""
        return np.diff(self.polygon_offsets)

    def geometries(self) -> GeometryArray:
        """The polygons as shapely objects (one vectorized call)."""
        if len(self) == 0:
            return np.empty(0, dtype=object)
        built = shapely.from_ragged_array(
            shapely.GeometryType.POLYGON,
            self.coordinates,
            (self.ring_offsets, self.polygon_offsets),
        )
        return np.asarray(built, dtype=object)

    def rings(self, ring_ids: NDArray[np.int64], counts: NDArray[np.int64]) -> RaggedPolygons:
        """New polygons made of the rings ``ring_ids``, ``counts[i]`` rings for polygon i."""
        lengths = self.ring_lengths[ring_ids]
        return RaggedPolygons(
            _copy_ranges(self.coordinates, self.ring_offsets[ring_ids], lengths),
            offsets(lengths),
            offsets(counts),
        )

    def take(self, indices: NDArray[np.int64]) -> RaggedPolygons:
        """The polygons at ``indices``, in that order."""
        counts = self.ring_counts[indices]
        return self.rings(ranges(self.polygon_offsets[:-1][indices], counts), counts)


def empty_ragged() -> RaggedPolygons:
    """No polygons."""
    return RaggedPolygons(
        np.zeros((0, 2), dtype=np.float64), np.zeros(1, np.int64), np.zeros(1, np.int64)
    )


def from_geometries(geometries: GeometryArray) -> RaggedPolygons:
    """Shapely polygons in flat arrays."""
    if len(geometries) == 0:
        return empty_ragged()
    _, coordinates, (ring_offsets, polygon_offsets) = shapely.to_ragged_array(geometries)
    return RaggedPolygons(
        np.asarray(coordinates, dtype=np.float64),
        np.asarray(ring_offsets, dtype=np.int64),
        np.asarray(polygon_offsets, dtype=np.int64),
    )


def concat_ragged(parts: Sequence[RaggedPolygons]) -> RaggedPolygons:
    """All polygons of ``parts``, in order."""
    if not parts:
        return empty_ragged()
    ring_shift = np.cumsum([0] + [len(part.ring_offsets) - 1 for part in parts])
    vertex_shift = np.cumsum([0] + [len(part.coordinates) for part in parts])
    return RaggedPolygons(
        np.concatenate([part.coordinates for part in parts]),
        np.concatenate(
            [[0]]
            + [
                part.ring_offsets[1:] + shift
                for part, shift in zip(parts, vertex_shift, strict=False)
            ]
        ).astype(np.int64),
        np.concatenate(
            [[0]]
            + [
                part.polygon_offsets[1:] + shift
                for part, shift in zip(parts, ring_shift, strict=False)
            ]
        ).astype(np.int64),
    )
