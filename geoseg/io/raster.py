"""Reading rasters: metadata with validation, and windowed reads.

Every read opens the file, reads one window and closes it, so the functions are
safe to call from Dask tasks in any process. Errors name the file and say what
is wrong with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.errors import RasterioIOError

from geoseg.errors import InputError, RasterReadError
from geoseg.grid import PixelWindow, RasterGrid


@dataclass(frozen=True)
class RasterInfo:
    """What geoseg needs to know about a raster file before reading pixels."""

    path: Path
    grid: RasterGrid
    count: int
    dtype: str
    nodata: float | None
    descriptions: tuple[str, ...]
    scales: tuple[float, ...]
    offsets: tuple[float, ...]
    colormap: dict[int, tuple[int, int, int, int]] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    block_shape: tuple[int, int] = (256, 256)


def read_info(path: str | Path) -> RasterInfo:
    """Open ``path`` and return its metadata; raise a clear error if unusable.

    Raises
    ------
    RasterReadError
        Missing file, not a raster, or unreadable (truncated) file.
    InputError
        The raster has no CRS or a rotated (not north-up) transform.
    """
    path = Path(path)
    if not path.exists():
        raise RasterReadError(f"{path}: no such file")
    try:
        with rasterio.open(path) as dataset:
            if dataset.crs is None:
                raise InputError(
                    f"{path}: the raster has no CRS; assign one "
                    "(e.g. gdal_edit.py -a_srs EPSG:XXXX)"
                )
            transform = dataset.transform
            if transform.b != 0 or transform.d != 0:
                raise InputError(f"{path}: rotated rasters are not supported; warp it north-up")
            colormap = None
            try:
                colormap = {int(k): tuple(v) for k, v in dataset.colormap(1).items()}
            except ValueError:
                colormap = None
            return RasterInfo(
                path=path,
                grid=RasterGrid(dataset.crs, transform, dataset.height, dataset.width),
                count=dataset.count,
                dtype=str(dataset.dtypes[0]),
                nodata=dataset.nodata,
                descriptions=tuple(text or "" for text in dataset.descriptions),
                scales=tuple(float(value) for value in dataset.scales),
                offsets=tuple(float(value) for value in dataset.offsets),
                colormap=colormap,
                tags=dict(dataset.tags()),
                block_shape=tuple(dataset.block_shapes[0]),
            )
    except RasterioIOError as error:
        raise RasterReadError(f"{path}: not a readable raster ({error})") from None


def read_window(
    path: str | Path,
    window: PixelWindow,
    *,
    bands: list[int] | None = None,
    fill_value: float | None = None,
) -> NDArray[np.generic]:
    """Read ``window`` of ``path`` as ``(bands, rows, cols)``.

    Parts of ``window`` outside the raster are filled with ``fill_value``
    (default: the raster's nodata, else 0).

    Parameters
    ----------
    path
        The raster file.
    window
        Pixel window; may extend past the raster edges.
    bands
        1-based band indexes to read (default: all).
    fill_value
        Value for pixels outside the raster.
    """
    try:
        with rasterio.open(path) as dataset:
            indexes = bands or list(range(1, dataset.count + 1))
            inside = window.clip(dataset.height, dataset.width)
            fill = fill_value if fill_value is not None else (dataset.nodata or 0)
            dtype = np.dtype(dataset.dtypes[indexes[0] - 1])
            out = np.full((len(indexes), window.height, window.width), fill, dtype=dtype)
            if inside.is_empty:
                return out
            data = dataset.read(indexes, window=inside.to_rasterio())
            offset = inside.shift(-window.row, -window.col)
            out[:, offset.row : offset.row_stop, offset.col : offset.col_stop] = data
            return out
    except RasterioIOError as error:
        raise RasterReadError(
            f"{path}: reading rows {window.row}-{window.row_stop}, cols {window.col}-"
            f"{window.col_stop} failed; the file may be truncated or corrupt ({error})"
        ) from None


def read_valid_mask(path: str | Path, window: PixelWindow) -> NDArray[np.bool_]:
    """Pixels of ``window`` that hold data in every band (GDAL dataset mask).

    Respects nodata values, internal masks and alpha bands; pixels outside the
    raster are invalid.
    """
    try:
        with rasterio.open(path) as dataset:
            inside = window.clip(dataset.height, dataset.width)
            out = np.zeros(window.shape, dtype=bool)
            if inside.is_empty:
                return out
            mask = dataset.dataset_mask(window=inside.to_rasterio()) > 0
            offset = inside.shift(-window.row, -window.col)
            out[offset.row : offset.row_stop, offset.col : offset.col_stop] = mask
            return out
    except RasterioIOError as error:
        raise RasterReadError(f"{path}: reading the validity mask failed ({error})") from None


def read_window_masked(
    path: str | Path, window: PixelWindow, *, bands: list[int] | None = None
) -> tuple[NDArray[np.generic], NDArray[np.bool_]]:
    """:func:`read_window` and :func:`read_valid_mask` of ``window`` in one opening.

    Pixels outside the raster are filled with the nodata value (else 0) and
    are invalid.
    """
    try:
        with rasterio.open(path) as dataset:
            indexes = bands or list(range(1, dataset.count + 1))
            inside = window.clip(dataset.height, dataset.width)
            dtype = np.dtype(dataset.dtypes[indexes[0] - 1])
            out = np.full((len(indexes), window.height, window.width), dataset.nodata or 0, dtype)
            valid = np.zeros(window.shape, dtype=bool)
            if inside.is_empty:
                return out, valid
            rows, cols = inside.shift(-window.row, -window.col).slices()
            out[:, rows, cols] = dataset.read(indexes, window=inside.to_rasterio())
            valid[rows, cols] = dataset.dataset_mask(window=inside.to_rasterio()) > 0
            return out, valid
    except RasterioIOError as error:
        raise RasterReadError(
            f"{path}: reading rows {window.row}-{window.row_stop}, cols {window.col}-"
            f"{window.col_stop} failed; the file may be truncated or corrupt ({error})"
        ) from None
