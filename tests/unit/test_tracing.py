"""geoseg's region tracer gives GDAL's polygons, vertex for vertex."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from rasterio.features import shapes
from scipy import ndimage

from geoseg.vector.tracing import RegionOutlines, trace_regions


def polygons(outlines: RegionOutlines) -> NDArray[np.object_]:
    return outlines.polygons.geometries()


def gdal(labels: NDArray[np.generic], mask: NDArray[np.bool_]) -> list[tuple[int, object]]:
    found = shapes(labels, mask=mask, connectivity=4, transform=Affine.identity())
    return [(int(value), shapely.geometry.shape(geometry)) for geometry, value in found]


def keys(pairs: list[tuple[int, object]]) -> list[tuple[int, bytes]]:
    """Sorted (value, normalized WKB): exact vertices, any start vertex and ring order."""
    return sorted((value, shapely.to_wkb(shapely.normalize(geometry))) for value, geometry in pairs)


def orientation(pairs: list[tuple[int, object]]) -> list[tuple[int, bytes, tuple[bool, ...]]]:
    """Per polygon, whether each ring is counter-clockwise (exterior first, holes sorted)."""
    result = []
    for value, geometry in pairs:
        rings = shapely.get_rings(geometry)
        holes = sorted(
            (shapely.to_wkb(shapely.normalize(r)), bool(shapely.is_ccw(r))) for r in rings[1:]
        )
        flags = (bool(shapely.is_ccw(rings[0])), *(flag for _, flag in holes))
        result.append((value, shapely.to_wkb(shapely.normalize(geometry)), flags))
    return sorted(result)


def traced(labels: NDArray[np.generic], mask: NDArray[np.bool_]) -> list[tuple[int, object]]:
    outlines = trace_regions(labels, mask)
    return [(int(v), g) for v, g in zip(outlines.values, polygons(outlines), strict=True)]


def blobs(seed: int, height: int, width: int, classes: int, smooth: float) -> NDArray[np.uint8]:
    noise = np.random.default_rng(seed).normal(size=(height, width))
    field = ndimage.gaussian_filter(noise, smooth) if smooth > 0 else noise
    edges = np.quantile(field, np.linspace(0, 1, classes + 1)[1:-1])
    return np.digitize(field, edges).astype(np.uint8)


SADDLES = [
    # a region touching itself at a corner encloses a one-pixel hole there
    [[0, 0, 0, 0, 0], [0, 1, 1, 1, 0], [0, 1, 0, 1, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0]],
    # the same with the classes swapped inside a frame
    [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 0, 1, 0, 1], [1, 0, 0, 1, 1], [1, 1, 1, 1, 1]],
    # a checkerboard: every pixel its own polygon
    [[1, 0, 1], [0, 1, 0], [1, 0, 1]],
    # two holes touching each other at a corner
    [[1, 1, 1, 1], [1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 1]],
]


@pytest.mark.parametrize("rows", SADDLES)
def test_corner_touching_regions_match_gdal(rows: list[list[int]]) -> None:
    labels = np.asarray(rows, dtype=np.uint8)
    mask = np.ones(labels.shape, dtype=bool)
    assert orientation(traced(labels, mask)) == orientation(gdal(labels, mask))
    assert shapely.is_valid(polygons(trace_regions(labels, mask))).all()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 100_000),
    height=st.integers(1, 48),
    width=st.integers(1, 48),
    classes=st.integers(1, 5),
    smooth=st.sampled_from([0.0, 0.0, 1.0, 2.5]),
    masked=st.sampled_from([0.0, 0.1, 0.4]),
)
def test_polygons_equal_gdal_shapes(
    seed: int, height: int, width: int, classes: int, smooth: float, masked: float
) -> None:
    labels = blobs(seed, height, width, classes, smooth)
    mask = np.random.default_rng(seed + 1).random((height, width)) >= masked
    mine, reference = traced(labels, mask), gdal(labels, mask)
    # same polygons, same vertices (no collinear ones), same ring orientation as GDAL
    assert orientation(mine) == orientation(reference)
    outlines = trace_regions(labels, mask)
    geometries = polygons(outlines)
    assert shapely.is_valid(geometries).all()
    np.testing.assert_array_equal(shapely.area(geometries), outlines.pixel_counts)


def test_region_ids_number_regions_in_raster_order() -> None:
    labels = blobs(4, 30, 40, classes=3, smooth=1.0)
    mask = np.ones(labels.shape, dtype=bool)
    mask[5:9, 5:30] = False
    outlines = trace_regions(labels, mask)
    ids = outlines.region_ids
    assert (ids[~mask] == -1).all()
    # each region is one 4-connected component of one value
    for class_id in range(3):
        _, count = ndimage.label((labels == class_id) & mask)
        assert len(np.unique(ids[(labels == class_id) & mask])) == count
    flat = ids.ravel()
    firsts = [int(np.flatnonzero(flat == region)[0]) for region in range(len(outlines))]
    assert firsts == sorted(firsts)
    np.testing.assert_array_equal(outlines.values, labels.ravel()[firsts])
    np.testing.assert_array_equal(outlines.pixel_counts, np.bincount(flat[flat >= 0]))


def test_offset_moves_vertices_and_bool_labels_work() -> None:
    labels = np.zeros((4, 5), dtype=bool)
    labels[1:3, 1:4] = True
    outlines = trace_regions(labels, np.ones(labels.shape, dtype=bool), offset=(100, 200))
    geometries = polygons(outlines)
    assert list(outlines.values) == [False, True]
    assert shapely.equals(geometries[1], shapely.box(201, 101, 204, 103))
    assert shapely.equals(geometries[0].exterior, shapely.box(200, 100, 205, 104).exterior)


def test_nothing_masked_gives_no_regions() -> None:
    labels = np.ones((3, 3), dtype=np.uint8)
    outlines = trace_regions(labels, np.zeros(labels.shape, dtype=bool))
    assert len(outlines) == 0
    assert outlines.polygons.coordinates.shape == (0, 2)
    assert list(outlines.polygons.polygon_offsets) == [0]
    assert len(polygons(outlines)) == 0


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="same shape"):
        trace_regions(np.zeros((3, 3), np.uint8), np.ones((3, 4), bool))
