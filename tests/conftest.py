"""Shared fixtures: seeded synthetic rasters (array -> GeoTIFF) and the real data dir."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from numpy.typing import NDArray

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
# exported ONNX graphs go to a cache of the test session (workers inherit it), not ~/.cache
os.environ.setdefault("GEOSEG_CACHE_DIR", tempfile.mkdtemp(prefix="geoseg-test-cache-"))

from geoseg.catalog.datadir import data_dir
from geoseg.errors import DataDirError

UTM_CRS = "EPSG:32612"
ORIGIN = (300000.0, 4150000.0)


def coordinate_image(bands: int, height: int, width: int) -> NDArray[np.uint16]:
    """A raster whose value encodes its own position: band b, row r, col c -> unique.

    ``value = (b * 7 + r * 3 + c * 5) % 60000`` keeps every band distinct and any
    shift of rows or columns visible, so tiling and stitching can be checked exactly.
    """
    b, r, c = np.meshgrid(np.arange(bands), np.arange(height), np.arange(width), indexing="ij")
    return ((b * 7 + r * 3 + c * 5) % 60000).astype(np.uint16)


def write_geotiff(
    path: Path,
    data: NDArray[np.generic],
    *,
    crs: str = UTM_CRS,
    transform: Affine | None = None,
    nodata: float | None = None,
    descriptions: list[str] | None = None,
    blocksize: int = 64,
) -> Path:
    """Write ``data`` (bands, rows, cols) or (rows, cols) as a tiled GeoTIFF."""
    if data.ndim == 2:
        data = data[None]
    transform = transform or Affine(30.0, 0.0, ORIGIN[0], 0.0, -30.0, ORIGIN[1])
    tiled = data.shape[1] >= blocksize and data.shape[2] >= blocksize
    profile = {
        "driver": "GTiff",
        "height": data.shape[1],
        "width": data.shape[2],
        "count": data.shape[0],
        "dtype": data.dtype,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    if tiled:
        profile.update(tiled=True, blockxsize=blocksize, blockysize=blocksize)
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(data)
        if descriptions:
            for index, text in enumerate(descriptions, start=1):
                dataset.set_band_description(index, text)
    return path


@pytest.fixture
def make_geotiff(tmp_path: Path) -> Callable[..., Path]:
    """Factory fixture: ``make_geotiff(array, name="x.tif", **profile) -> path``."""
    counter = iter(range(10**6))

    def factory(data: NDArray[np.generic], name: str | None = None, **kwargs: object) -> Path:
        path = tmp_path / (name or f"raster_{next(counter)}.tif")
        return write_geotiff(path, data, **kwargs)  # type: ignore[arg-type]

    return factory


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator."""
    return np.random.default_rng(20151818)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real sample data directory (``GEOSEG_DATA_DIR`` or ``../shared/data``)."""
    try:
        return data_dir()
    except DataDirError as error:
        pytest.skip(f"real data not available: {error}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` where no CUDA device is available."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
