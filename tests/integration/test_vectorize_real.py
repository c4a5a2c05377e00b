"""Seam-free vectorization of the real reference maps (Guadeloupe forest, PRODES)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from affine import Affine
from numpy.typing import NDArray
from rasterio.features import shapes

from geoseg.areas import pixel_areas_m2
from geoseg.catalog.datadir import data_file
from geoseg.grid import PixelWindow
from geoseg.io.raster import read_info, read_valid_mask, read_window
from geoseg.vector.polygonize import concat_pieces, merge_seam_pieces, polygonize_chunk
from tests.geodesic import row_areas_m2
from workflows.cluster import dask_client
from workflows.vectorize import lazy_labels, vectorize_file, vectorize_labels

GUADELOUPE = "guadeloupe_forest/forest_t1.tif"
PRODES = "rondonia_prodes/PRODES_LANDSAT_AMZ_2000-08-01_2020-07-31_class_v20220606.tif"
ALBERS_BRAZIL = "+proj=aea +lat_1=-2 +lat_2=-22 +lat_0=-12 +lon_0=-54 +ellps=GRS80 +units=m"


def keys_chunked(
    labels: NDArray[np.uint8], valid: NDArray[np.bool_], size: tuple[int, int]
) -> list[tuple[int, bytes]]:
    height, width = labels.shape
    chunks = []
    for row in range(0, height, size[0]):
        for col in range(0, width, size[1]):
            window = PixelWindow(row, col, *PixelWindow(row, col, *size).clip(height, width).shape)
            chunks.append(
                polygonize_chunk(
                    labels[window.slices()], valid[window.slices()], window, labels.shape
                )
            )
    pieces = concat_pieces(
        [chunk.interior for chunk in chunks] + [merge_seam_pieces(chunks, False)], False
    )
    return sorted(
        (int(value), shapely.to_wkb(shapely.normalize(geometry)))
        for geometry, value in zip(pieces.geometries, pieces.class_ids, strict=True)
    )


def keys_whole(labels: NDArray[np.uint8], valid: NDArray[np.bool_]) -> list[tuple[int, bytes]]:
    polygons = shapes(labels, mask=valid, connectivity=4, transform=Affine.identity())
    return sorted(
        (int(value), shapely.to_wkb(shapely.normalize(shapely.geometry.shape(geometry))))
        for geometry, value in polygons
    )


@pytest.fixture(scope="module")
def guadeloupe_window(
    shared_data: Path,
) -> tuple[NDArray[np.uint8], NDArray[np.bool_], list[tuple[int, bytes]]]:
    path = data_file(GUADELOUPE)
    window = PixelWindow(700, 900, 1500, 1500)
    labels = read_window(path, window, bands=[1])[0].astype(np.uint8)
    valid = read_valid_mask(path, window)
    return labels, valid, keys_whole(labels, valid)


@pytest.mark.slow
@pytest.mark.parametrize("size", [(512, 512), (97, 131), (1500, 41)])
def test_guadeloupe_window_chunked_equals_whole(
    guadeloupe_window: tuple[NDArray[np.uint8], NDArray[np.bool_], list[tuple[int, bytes]]],
    size: tuple[int, int],
) -> None:
    labels, valid, expected = guadeloupe_window
    assert len(expected) > 5000
    assert keys_chunked(labels, valid, size) == expected


@pytest.mark.slow
def test_guadeloupe_full_raster_on_a_process_cluster(shared_data: Path, tmp_path: Path) -> None:
    path = data_file(GUADELOUPE)
    info = read_info(path)
    labels = read_window(path, info.grid.full_window, bands=[1])[0]
    valid = read_valid_mask(path, info.grid.full_window)
    expected = [int(value) for _, value in shapes(labels, mask=valid, connectivity=4)]
    row_m2 = row_areas_m2(info.grid.transform, info.grid.crs.to_string(), info.grid.height)
    out = tmp_path / "forest.gpkg"
    with dask_client(None, n_workers=2) as client:
        counts = vectorize_file(path, out, chunk_size=1024, client=client)
    assert counts == {"forest_t1": len(expected)}
    table = pyogrio.read_dataframe(out, layer="forest_t1", read_geometry=False)
    for class_id in (0, 1):
        rows = table.loc[table["class_id"] == class_id]
        assert len(rows) == expected.count(class_id)
        pixels = ((labels == class_id) & valid) * row_m2[:, None]
        assert rows["area_m2"].sum() == pytest.approx(pixels.sum(), rel=1e-6)


@pytest.mark.parametrize("chunk_size", [100, 37])
def test_prodes_geographic_chunked_equals_whole_with_geodesic_areas(
    shared_data: Path, chunk_size: int
) -> None:
    path = data_file(PRODES)
    grid = read_info(path).grid
    labels, valid = lazy_labels(path, grid, chunk_size)
    table = vectorize_labels(labels, valid, grid)
    pixels = labels.compute()
    mask = valid.compute()
    whole = keys_whole(pixels, mask)
    assert len(table) == len(whole)
    assert sorted(table["class_id"]) == sorted(value for value, _ in whole)
    pixel_areas = pixel_areas_m2(grid)
    equal_area = table.to_crs(ALBERS_BRAZIL).area
    for class_id in np.unique(pixels[mask]):
        rows = table["class_id"] == class_id
        expected = pixel_areas[(pixels == class_id) & mask].sum()
        assert table.loc[rows, "area_m2"].sum() == pytest.approx(expected, rel=1e-4)
        assert equal_area[rows].sum() == pytest.approx(expected, rel=5e-3)
    assert keys_chunked(pixels, mask, (chunk_size, chunk_size)) == whole
