"""Chunked polygonization with seam merging equals whole-raster polygonization."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.features import shapes
from scipy import ndimage

from geoseg.areas import pixel_areas_m2
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.vector.polygonize import (
    PolygonPieces,
    concat_pieces,
    merge_seam_pieces,
    polygon_mask,
    polygonize_chunk,
)
from geoseg.vector.polygons import (
    class_probability,
    drop_small,
    polygon_table,
    probability_bands,
    simplify_coverage,
)

UTM = CRS.from_epsg(32612)


def chunked(
    labels: NDArray[np.uint8],
    rows: int,
    cols: int,
    *,
    valid: NDArray[np.bool_] | None = None,
    probability: NDArray[np.float32] | None = None,
) -> PolygonPieces:
    height, width = labels.shape
    chunks = []
    for row in range(0, height, rows):
        for col in range(0, width, cols):
            window = PixelWindow(row, col, min(rows, height - row), min(cols, width - col))
            chunks.append(
                polygonize_chunk(
                    labels[window.slices()],
                    None if valid is None else valid[window.slices()],
                    window,
                    labels.shape,
                    probability=None if probability is None else probability[window.slices()],
                )
            )
    with_probability = probability is not None
    merged = merge_seam_pieces(chunks, with_probability)
    return concat_pieces([chunk.interior for chunk in chunks] + [merged], with_probability)


def whole(labels: NDArray[np.uint8], mask: NDArray[np.bool_]) -> list[tuple[int, bytes]]:
    polygons = shapes(labels, mask=mask, connectivity=4, transform=Affine.identity())
    return sorted(
        (int(value), shapely.to_wkb(shapely.normalize(shapely.geometry.shape(geometry))))
        for geometry, value in polygons
    )


def as_keys(pieces: PolygonPieces) -> list[tuple[int, bytes]]:
    return sorted(
        (int(value), shapely.to_wkb(shapely.normalize(geometry)))
        for geometry, value in zip(pieces.geometries, pieces.class_ids, strict=True)
    )


def blobs(seed: int, height: int, width: int, classes: int, smooth: float) -> NDArray[np.uint8]:
    """Random class map with blobby regions (holes and polygons cut by many seams)."""
    noise = np.random.default_rng(seed).normal(size=(height, width))
    field = ndimage.gaussian_filter(noise, smooth) if smooth > 0 else noise
    edges = np.quantile(field, np.linspace(0, 1, classes + 1)[1:-1])
    return np.digitize(field, edges).astype(np.uint8)


@pytest.mark.parametrize(("rows", "cols"), [(1000, 1000), (7, 7), (13, 29), (64, 5), (1, 80)])
def test_chunked_equals_whole_for_fixed_chunk_sizes(rows: int, cols: int) -> None:
    labels = blobs(3, 61, 83, classes=4, smooth=2.0)
    labels[20:30, 10:40] = 255  # nodata is never polygonized
    expected = whole(labels, labels != 255)
    assert len(expected) > 20
    assert as_keys(chunked(labels, rows, cols)) == expected


def test_pieces_meeting_diagonally_inside_a_chunk_are_joined_like_gdal() -> None:
    # In the lower chunk, (3, 1) and {(3, 3), (4, 2), (4, 3)} are two pieces meeting only
    # at the corner (x 2, y 4); the upper chunk joins them, so that corner is where the
    # exterior meets the hole (column 2, rows 1-3): the rings must pair its edges as
    # GDAL does on the whole raster (two simple rings, not one pinched ring)
    labels = np.array(
        [
            [0, 1, 1, 1, 0, 0],
            [0, 1, 0, 1, 0, 0],
            [0, 1, 0, 1, 0, 0],
            [0, 1, 0, 1, 0, 0],
            [0, 0, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 0],
        ],
        dtype=np.uint8,
    )
    pieces = chunked(labels, 3, 6)
    assert as_keys(pieces) == whole(labels, np.ones(labels.shape, dtype=bool))
    region = pieces.geometries[pieces.class_ids == 1]
    assert len(region) == 1 and shapely.is_valid(region[0])
    assert shapely.get_num_interior_rings(region[0]) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    classes=st.integers(1, 4),
    smooth=st.sampled_from([0.0, 1.0, 2.5]),
    rows=st.integers(1, 45),
    cols=st.integers(1, 45),
    nodata_fraction=st.sampled_from([0.0, 0.1]),
)
def test_chunked_equals_whole_property(
    seed: int,
    height: int,
    width: int,
    classes: int,
    smooth: float,
    rows: int,
    cols: int,
    nodata_fraction: float,
) -> None:
    labels = blobs(seed, height, width, classes, smooth)
    valid = np.random.default_rng(seed + 1).random((height, width)) >= nodata_fraction
    assert as_keys(chunked(labels, rows, cols, valid=valid)) == whole(labels, valid)


def test_seam_through_a_ring_keeps_the_hole() -> None:
    labels = np.zeros((20, 20), dtype=np.uint8)
    labels[4:16, 4:16] = 1
    labels[8:12, 8:12] = 2  # hole of class 1, cut by the seams at 10
    pieces = chunked(labels, 10, 10)
    ring = pieces.geometries[pieces.class_ids == 1]
    assert len(ring) == 1
    assert shapely.get_num_interior_rings(ring[0]) == 1
    assert ring[0].area == 144 - 16
    simplified = simplify_coverage(pieces.geometries, 3.0)
    assert shapely.get_num_interior_rings(simplified[pieces.class_ids == 1][0]) == 1


def test_pixel_areas_sum_to_class_pixel_counts() -> None:
    labels = blobs(11, 50, 70, classes=3, smooth=1.5)
    grid = RasterGrid(UTM, Affine(30.0, 0, 300000.0, 0, -30.0, 4150000.0), 50, 70)
    table = polygon_table(chunked(labels, 16, 9), grid, class_names={0: "water"})
    pixel_areas = pixel_areas_m2(grid)
    for class_id in range(3):
        total = table.loc[table["class_id"] == class_id, "area_m2"].sum()
        assert total == pytest.approx(pixel_areas[labels == class_id].sum(), rel=1e-6)
    assert set(table.loc[table["class_id"] == 0, "class_name"]) == {"water"}
    assert set(table.loc[table["class_id"] == 1, "class_name"]) == {"class 1"}
    np.testing.assert_allclose(table["area_ha"], table["area_m2"] / 1e4)


def test_geographic_areas_are_geodesic_and_match_pixel_areas() -> None:
    labels = blobs(5, 40, 60, classes=3, smooth=2.0)
    transform = Affine(0.0003, 0, -62.6, 0, -0.0003, -8.7)
    grid = RasterGrid(CRS.from_epsg(4674), transform, 40, 60)
    table = polygon_table(chunked(labels, 11, 17), grid)
    pixel_areas = pixel_areas_m2(grid)
    for class_id in range(3):
        total = table.loc[table["class_id"] == class_id, "area_m2"].sum()
        assert total == pytest.approx(pixel_areas[labels == class_id].sum(), rel=1e-5)
    albers = "+proj=aea +lat_1=-2 +lat_2=-22 +lat_0=-12 +lon_0=-54 +ellps=GRS80 +units=m"
    np.testing.assert_allclose(table.to_crs(albers).area, table["area_m2"], rtol=5e-3)


def simplified_table_checks(labels: NDArray[np.uint8], tolerance: float) -> None:
    pieces = chunked(labels, 17, 23)
    simplified = simplify_coverage(pieces.geometries, tolerance)
    assert shapely.is_valid(simplified).all()
    assert len(simplified) == len(pieces)
    # holes kept, no overlaps, no gaps: the union still covers exactly the pixels
    np.testing.assert_array_equal(
        shapely.get_num_interior_rings(simplified),
        shapely.get_num_interior_rings(pieces.geometries),
    )
    union = shapely.union_all(simplified)
    assert shapely.area(simplified).sum() == pytest.approx(union.area, abs=1e-6)
    assert union.area == pytest.approx(labels.size, abs=1e-6)
    assert (
        shapely.get_num_coordinates(simplified).sum()
        <= shapely.get_num_coordinates(pieces.geometries).sum()
    )


def test_simplification_keeps_the_coverage() -> None:
    labels = blobs(21, 80, 90, classes=4, smooth=3.0)
    simplified_table_checks(labels, 2.0)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), tolerance=st.sampled_from([0.5, 1.5, 4.0]))
def test_simplification_topology_property(seed: int, tolerance: float) -> None:
    simplified_table_checks(blobs(seed, 40, 50, classes=3, smooth=2.0), tolerance)


def test_min_area_filter_drops_exactly_the_small_polygons() -> None:
    labels = blobs(8, 60, 60, classes=3, smooth=1.0)
    # on the central meridian: a 10 m map pixel covers 100 / 0.9996**2 = 100.08 m2 of ground
    grid = RasterGrid(UTM, Affine(10.0, 0, 500_000.0, 0, -10.0, 4_000_000.0), 60, 60)
    table = polygon_table(chunked(labels, 20, 20), grid)
    kept = drop_small(table, 1000.0)  # 10 pixels of 100.08 m2
    pixel_counts = shapely.area(chunked(labels, 60, 60).geometries)
    assert 0 < len(kept) < len(table)
    assert (kept["area_m2"] >= 1000.0).all()
    assert len(kept) == (pixel_counts >= 10).sum()


def test_mean_probability_per_polygon_across_seams() -> None:
    labels = blobs(4, 30, 40, classes=2, smooth=2.0)
    probability = np.random.default_rng(1).random((30, 40)).astype(np.float32)
    pieces = chunked(labels, 7, 11, probability=probability)
    assert pieces.probability_sums is not None
    for geometry, total in zip(pieces.geometries, pieces.probability_sums, strict=True):
        rows, cols = np.mgrid[0:30, 0:40]
        inside = shapely.contains_xy(geometry, cols + 0.5, rows + 0.5)
        assert total == pytest.approx(probability[inside].sum(), rel=1e-5)


def test_class_probability_picks_the_labelled_class_band() -> None:
    labels = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    probabilities = np.stack([np.full((2, 2), value, dtype=np.uint8) for value in (51, 102, 255)])
    bands = probability_bands(3, ("", "", ""), {0: "a", 1: "b", 2: "c"}, "probs.tif")
    chosen = class_probability(labels, probabilities, bands)
    np.testing.assert_allclose(chosen, [[0.2, 0.4], [1.0, 0.0]], atol=1e-6)
    named = probability_bands(2, ("forest", "other"), {1: "other", 4: "forest"}, "p.tif")
    assert named == {1: 2, 4: 1}


def test_classes_option_and_default_nodata() -> None:
    labels = np.array([[1, 1, 2], [255, 2, 2]], dtype=np.uint8)
    mask = polygon_mask(labels, None, [2])
    np.testing.assert_array_equal(mask, [[False, False, True], [False, True, True]])
