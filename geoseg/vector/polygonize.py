"""Seam-free polygonization of a class map, one chunk at a time.

Every chunk is polygonized on its own (4-connectivity, one polygon per
connected region of one class, holes included) in *global pixel coordinates*:
``x`` is the raster column and ``y`` the raster row of a pixel corner, so every
vertex is an exact integer and unions are exact. Pieces that touch an interior
chunk seam are kept apart together with the piece index of every pixel along
the chunk's four edges (1-pixel strips, not the chunk). :func:`merge_seam_pieces`
then connects pieces across seams (same class, edge-adjacent pixels on both
sides) with a union-find and unions each group, so the result equals
polygonizing the whole raster at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from geoseg.grid import PixelWindow
from geoseg.labels import LABEL_NODATA
from geoseg.vector.ragged import RaggedPolygons, concat_ragged
from geoseg.vector.seams import join_rings
from geoseg.vector.tracing import trace_regions

GeometryArray = NDArray[np.object_]
POLYGON_TYPE_ID = 3


@dataclass(frozen=True)
class PolygonPieces:
    """Polygons in global pixel coordinates with their class and probability sums.

    ``probability_sums`` holds, per polygon, the sum over its pixels of the
    probability of its class (None when no probabilities were given). A
    polygon's pixel count is its area in pixel coordinates.
    """

    geometries: GeometryArray
    class_ids: NDArray[np.uint8]
    probability_sums: NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return len(self.geometries)

    def __reduce__(self) -> tuple[Any, ...]:
        # Dask ships pieces between processes: flat coordinate and offset arrays
        # pickle far faster than one WKB object per polygon.
        return (_unpickle_pieces, (_pack(self.geometries), self.class_ids, self.probability_sums))

    def take(self, selection: NDArray[np.bool_] | NDArray[np.intp]) -> PolygonPieces:
        """The pieces picked by a boolean mask or index array."""
        sums = None if self.probability_sums is None else self.probability_sums[selection]
        return PolygonPieces(self.geometries[selection], self.class_ids[selection], sums)


def _pack(geometries: GeometryArray) -> tuple[Any, ...]:
    if len(geometries) and (shapely.get_type_id(geometries) == POLYGON_TYPE_ID).all():
        return ("ragged", shapely.to_ragged_array(geometries))
    return ("wkb", shapely.to_wkb(geometries))


def _unpack(packed: tuple[Any, ...]) -> GeometryArray:
    kind, payload = packed
    geometries = (
        shapely.from_ragged_array(*payload) if kind == "ragged" else shapely.from_wkb(payload)
    )
    return np.asarray(geometries, dtype=object)


def _unpickle_pieces(
    packed: tuple[Any, ...],
    class_ids: NDArray[np.uint8],
    sums: NDArray[np.float64] | None,
) -> PolygonPieces:
    return PolygonPieces(_unpack(packed), class_ids, sums)


def empty_pieces(with_probability: bool) -> PolygonPieces:
    """No polygons, with or without a probability column."""
    sums = np.zeros(0, dtype=np.float64) if with_probability else None
    return PolygonPieces(np.empty(0, dtype=object), np.zeros(0, dtype=np.uint8), sums)


def concat_pieces(parts: Sequence[PolygonPieces], with_probability: bool) -> PolygonPieces:
    """All pieces of ``parts`` in one :class:`PolygonPieces`."""
    if not parts:
        return empty_pieces(with_probability)
    sums = None
    if with_probability:
        sums = np.concatenate([_sums_or_zeros(part) for part in parts])
    return PolygonPieces(
        np.concatenate([part.geometries for part in parts]),
        np.concatenate([part.class_ids for part in parts]),
        sums,
    )


def _sums_or_zeros(pieces: PolygonPieces | SeamPieces) -> NDArray[np.float64]:
    if pieces.probability_sums is None:
        return np.zeros(len(pieces), dtype=np.float64)
    return pieces.probability_sums


@dataclass(frozen=True)
class SeamPieces:
    """Pieces of polygons cut by a chunk seam, kept as flat arrays for the merge."""

    polygons: RaggedPolygons
    class_ids: NDArray[np.uint8]
    probability_sums: NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return len(self.class_ids)


@dataclass(frozen=True)
class SeamEdges:
    """Index + 1 of the seam piece owning each pixel along a chunk's edges (0: none)."""

    top: NDArray[np.int64]
    bottom: NDArray[np.int64]
    left: NDArray[np.int64]
    right: NDArray[np.int64]


@dataclass(frozen=True)
class ChunkPolygons:
    """What one chunk contributes: final polygons, and pieces cut by a seam."""

    window: PixelWindow
    interior: PolygonPieces
    seam: SeamPieces
    edges: SeamEdges


def polygonize_pixels(
    labels: NDArray[np.uint8], mask: NDArray[np.bool_], window: PixelWindow
) -> PolygonPieces:
    """Polygons of the 4-connected regions of ``labels`` where ``mask`` is True.

    Coordinates are global pixel coordinates (``window`` gives the chunk's
    offset in the raster). The polygons equal those of
    ``rasterio.features.shapes(labels, mask=mask, connectivity=4)``.
    """
    outlines = trace_regions(labels, mask, (window.row, window.col))
    return PolygonPieces(outlines.polygons.geometries(), outlines.values.astype(np.uint8))


def polygon_mask(
    labels: NDArray[np.uint8],
    valid: NDArray[np.bool_] | None,
    classes: Sequence[int] | None = None,
) -> NDArray[np.bool_]:
    """Pixels to polygonize: valid (default: not the label nodata 255) and of ``classes``."""
    mask = labels != LABEL_NODATA if valid is None else valid.astype(bool, copy=True)
    if classes is not None:
        mask &= np.isin(labels, np.asarray(list(classes), dtype=labels.dtype))
    return mask


def _interior_seams(window: PixelWindow, raster_shape: tuple[int, int]) -> tuple[bool, ...]:
    """Which of top, bottom, left, right of ``window`` border another chunk."""
    height, width = raster_shape
    return (window.row > 0, window.row_stop < height, window.col > 0, window.col_stop < width)


def seam_edges(region_ids: NDArray[np.int32], seam_regions: NDArray[np.intp]) -> SeamEdges:
    """Which seam piece owns each pixel along the four edges of a chunk.

    ``region_ids`` is the chunk's region raster (-1: not polygonized) and
    ``seam_regions`` the region of each seam piece, in piece order.
    """
    piece_of_region = np.zeros(int(region_ids.max(initial=-1)) + 2, dtype=np.int64)
    piece_of_region[seam_regions + 1] = np.arange(1, len(seam_regions) + 1)
    strips = (region_ids[0], region_ids[-1], region_ids[:, 0], region_ids[:, -1])
    return SeamEdges(*(piece_of_region[strip + 1] for strip in strips))


def polygonize_chunk(
    labels: NDArray[np.uint8],
    valid: NDArray[np.bool_] | None,
    window: PixelWindow,
    raster_shape: tuple[int, int],
    *,
    classes: Sequence[int] | None = None,
    probability: NDArray[np.floating] | None = None,
) -> ChunkPolygons:
    """Polygonize one chunk of a class map and keep what the seam merge needs.

    Parameters
    ----------
    labels
        The chunk's class ids (uint8, or bool for a mask), shape ``window.shape``.
    valid
        Pixels holding data (None: every pixel whose label is not 255).
    window
        Where the chunk lies in the raster.
    raster_shape
        ``(height, width)`` of the whole raster (chunk edges on the raster
        border are not seams).
    classes
        Polygonize only these class ids (default: all).
    probability
        Probability of the labelled class per pixel, for mean probabilities.
    """
    if labels.dtype == np.bool_:  # a mask (e.g. deforestation): classes 0 and 1
        labels = labels.astype(np.uint8)
    outlines = trace_regions(labels, polygon_mask(labels, valid, classes), (window.row, window.col))
    class_ids = outlines.values.astype(np.uint8)
    sums = None
    if probability is not None:
        inside = outlines.region_ids >= 0
        sums = np.bincount(
            outlines.region_ids[inside],
            weights=probability[inside].astype(np.float64),
            minlength=len(outlines),
        ).astype(np.float64)
    touches = np.zeros(len(outlines), dtype=bool)
    seam_strips = zip(
        _interior_seams(window, raster_shape),
        (
            outlines.region_ids[0],
            outlines.region_ids[-1],
            outlines.region_ids[:, 0],
            outlines.region_ids[:, -1],
        ),
        strict=True,
    )
    for is_seam, strip in seam_strips:
        if is_seam:
            touches[strip[strip >= 0]] = True
    seam, interior = np.flatnonzero(touches), np.flatnonzero(~touches)
    return ChunkPolygons(
        window,
        PolygonPieces(
            outlines.polygons.take(interior).geometries(),
            class_ids[interior],
            None if sums is None else sums[interior],
        ),
        SeamPieces(
            outlines.polygons.take(seam), class_ids[seam], None if sums is None else sums[seam]
        ),
        seam_edges(outlines.region_ids, seam),
    )


def _seam_pairs(chunks: Sequence[ChunkPolygons], offsets: NDArray[np.int64]) -> NDArray[np.int64]:
    """Global index pairs of seam pieces that touch across a seam (same class)."""
    by_corner = {(chunk.window.row, chunk.window.col): index for index, chunk in enumerate(chunks)}
    classes = np.concatenate([chunk.seam.class_ids for chunk in chunks])
    pairs: list[NDArray[np.int64]] = []
    for index, chunk in enumerate(chunks):
        window = chunk.window
        neighbours = (
            (by_corner.get((window.row, window.col_stop)), "right", "left"),
            (by_corner.get((window.row_stop, window.col)), "bottom", "top"),
        )
        for neighbour, own_side, other_side in neighbours:
            if neighbour is None:
                continue
            own = getattr(chunk.edges, own_side)
            other = getattr(chunks[neighbour].edges, other_side)
            both = (own > 0) & (other > 0)
            first = offsets[index] + own[both] - 1
            second = offsets[neighbour] + other[both] - 1
            same_class = classes[first] == classes[second]
            pairs.append(np.stack([first[same_class], second[same_class]], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs), axis=0)


def seam_groups(chunks: Sequence[ChunkPolygons]) -> NDArray[np.int64]:
    """Group id of every seam piece (chunk order): pieces of one polygon share it."""
    counts = np.array([len(chunk.seam) for chunk in chunks], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    total = int(counts.sum())
    pairs = _seam_pairs(chunks, offsets)
    graph = coo_matrix(
        (np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(total, total)
    )
    _, groups = connected_components(graph, directed=False)
    return np.asarray(groups, dtype=np.int64)


def merge_seam_pieces(chunks: Sequence[ChunkPolygons], with_probability: bool) -> PolygonPieces:
    """Join the seam pieces of all chunks into whole polygons.

    Pieces of one region (same class, edge-adjacent across a seam) become one
    polygon: their exterior rings are joined edge by edge
    (:func:`geoseg.vector.seams.join_rings`) and their holes, which lie inside their
    own chunks, are kept. Polygons come in group order.

    Parameters
    ----------
    chunks
        The results of :func:`polygonize_chunk` for every chunk of the raster
        (chunks form a regular grid; a missing neighbour means no seam there).
    with_probability
        Whether the pieces carry probability sums.
    """
    if sum(len(chunk.seam) for chunk in chunks) == 0:
        return empty_pieces(with_probability)
    groups = seam_groups(chunks)
    order = np.argsort(groups, kind="stable")
    starts = np.flatnonzero(np.diff(groups[order], prepend=-1))
    pieces = concat_ragged([chunk.seam.polygons for chunk in chunks])
    class_ids = np.concatenate([chunk.seam.class_ids for chunk in chunks])
    sums = None
    if with_probability:
        every_sum = np.concatenate([_sums_or_zeros(chunk.seam) for chunk in chunks])
        sums = np.add.reduceat(every_sum[order], starts)
    joined = _joined_polygons(pieces, groups, chunks)
    return PolygonPieces(joined.geometries(), class_ids[order[starts]], sums)


def _seam_lines(chunks: Sequence[ChunkPolygons]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The x of every vertical and the y of every horizontal seam between chunks."""
    columns = {chunk.window.col for chunk in chunks} - {0}
    rows = {chunk.window.row for chunk in chunks} - {0}
    return np.array(sorted(columns), dtype=np.int64), np.array(sorted(rows), dtype=np.int64)


def _joined_polygons(
    members: RaggedPolygons, groups: NDArray[np.int64], chunks: Sequence[ChunkPolygons]
) -> RaggedPolygons:
    """One polygon per group of ``members``, by group: exteriors joined, holes kept."""
    _, group_index, group_sizes = np.unique(groups, return_inverse=True, return_counts=True)
    joined_member = group_sizes[group_index] > 1
    exteriors = members.polygon_offsets[:-1]
    to_join = members.rings(exteriors[joined_member], np.ones(int(joined_member.sum()), np.int64))
    joined = join_rings(
        to_join.coordinates,
        to_join.ring_offsets,
        group_index[joined_member].astype(np.int64),
        *_seam_lines(chunks),
    )
    # one table of rings, the members' own then the joined ones; each group takes its
    # joined rings (exterior first) then the rings its members keep (all of a lone
    # member's, only the holes of joined members)
    member_of_ring = np.repeat(np.arange(len(members)), members.ring_counts)
    is_exterior = np.zeros(len(member_of_ring), dtype=bool)
    is_exterior[exteriors] = True
    kept = np.flatnonzero(~(joined_member[member_of_ring] & is_exterior))
    table = RaggedPolygons(
        np.concatenate([members.coordinates, joined.coordinates]),
        np.concatenate([members.ring_offsets[:-1], len(members.coordinates) + joined.ring_offsets]),
        np.zeros(1, dtype=np.int64),
    )
    ring_ids = np.concatenate([kept, len(member_of_ring) + np.arange(len(joined.groups))])
    ring_group = np.concatenate([group_index[member_of_ring[kept]], joined.groups])
    joined_first = np.concatenate(
        [np.ones(len(kept), np.int8), np.zeros(len(joined.groups), np.int8)]
    )
    ring_order = np.lexsort((np.arange(len(ring_ids)), joined_first, ring_group))
    return table.rings(ring_ids[ring_order], np.bincount(ring_group, minlength=len(group_sizes)))
