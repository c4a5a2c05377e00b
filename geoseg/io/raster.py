"""Reading rasters: metadata with validation, and windowed reads.

:func:`read_window` and :func:`read_valid_mask` open the file, read one window
and close it. :func:`read_window_masked`, the engine's many-window reader, keeps
its dataset open per process and thread (a few files at most, keyed by the
file's identity, so a replaced file is reopened), so that raster blocks shared
by overlapping windows are decoded once: GDAL's block cache is bounded to
:data:`READ_CACHE_BYTES` during those reads. All are safe to call from Dask
tasks in any process. Errors name the file and say what is wrong with it.

Every input raster is opened by :func:`open_raster`, with an allow-list of GDAL
drivers (:data:`READ_DRIVERS`: GeoTIFF, which reads COGs too; a VRT only when
asked for), so a file named ``.tif`` that is really a VRT pointing at other
files is refused. :func:`read_info` refuses what cannot be right before any
pixel is read: no CRS, no geotransform, a rotated grid, or a declared size
beyond the pixel budget (:data:`geoseg.limits.MAX_PIXELS`: a sparse "header bomb" declaring
10^12 pixels in a few hundred kilobytes). Blocks a sparse GeoTIFF does not
hold are read as invalid without being decoded (:func:`read_window_masked`).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.io import DatasetReader

from geoseg.errors import GeosegError, InputError, RasterReadError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.limits import MAX_PIXELS, check_pixel_budget

READ_DRIVERS = ("GTiff",)
"""GDAL drivers input rasters are opened with (GDAL reads COGs with ``GTiff``)."""

WARNING_FILTERS_LOCK = threading.RLock()
"""Held while geoseg changes the process-wide warning filters (``warnings.catch_warnings``
is not thread-safe: a thread restoring the filters undoes another thread's change)."""

_VRT_SIGNATURE = b"<VRTDataset"


def _sniff_vrt(path: Path) -> bool:
    """True when ``path`` starts like a GDAL VRT (XML), whatever its name."""
    try:
        with open(path, "rb") as file:
            head = file.read(1024)
    except OSError:
        return False
    return _VRT_SIGNATURE in head


def open_raster(path: str | Path, *, allow_vrt: bool = False) -> DatasetReader:
    """Open an input raster for reading with the GDAL drivers geoseg accepts.

    GeoTIFF (and COG) only; a VRT only with ``allow_vrt`` (``--allow-vrt``):
    a VRT can make GDAL read any file or URL it names.

    Raises
    ------
    InputError
        The file is a VRT and ``allow_vrt`` is False.
    RasterReadError
        Not a GeoTIFF (or VRT), or unreadable.
    """
    path = Path(path)
    try:
        return rasterio.open(path, driver=READ_DRIVERS[0])
    except RasterioIOError as error:
        is_vrt = _sniff_vrt(path)
        if is_vrt and allow_vrt:
            try:
                return rasterio.open(path, driver="VRT")
            except RasterioIOError as vrt_error:
                raise RasterReadError(f"{path}: not a readable VRT ({vrt_error})") from None
        if is_vrt:
            raise InputError(
                f"{path}: the file is a GDAL VRT, not a GeoTIFF; a VRT can make GDAL read "
                "other files, so it is refused: convert it (gdal_translate -of GTiff) or pass "
                "--allow-vrt if you trust it"
            ) from None
        raise RasterReadError(
            f"{path}: not a readable raster ({error}); geoseg reads GeoTIFF and COG files "
            "(convert others with gdal_translate -of GTiff)"
        ) from None


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
    common_names: tuple[str, ...] = ()
    """Each band's ``common_name`` tag (STAC eo common names), ``''`` where absent."""


def read_info(
    path: str | Path, *, max_pixels: int = MAX_PIXELS, allow_vrt: bool = False
) -> RasterInfo:
    """Open ``path`` and return its metadata; raise a clear error if unusable.

    Parameters
    ----------
    path
        The raster file.
    max_pixels
        Budget of declared rows x columns (see :data:`geoseg.limits.MAX_PIXELS`).
    allow_vrt
        Accept a GDAL VRT (see :func:`open_raster`).

    Raises
    ------
    RasterReadError
        Missing file, not a GeoTIFF, or unreadable (truncated) file.
    InputError
        A VRT without ``allow_vrt``; no CRS, no geotransform, or a rotated
        (not north-up) transform; a declared size beyond ``max_pixels``.
    """
    path = Path(path)
    if not path.exists():
        raise RasterReadError(f"{path}: no such file")
    try:
        with WARNING_FILTERS_LOCK, warnings.catch_warnings():
            # rasterio warns on opening a raster without a geotransform; it is refused below
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            opened = open_raster(path, allow_vrt=allow_vrt)
        with opened as dataset:
            check_pixel_budget(str(path), dataset.height, dataset.width, dataset.count, max_pixels)
            if dataset.crs is None:
                raise InputError(
                    f"{path}: the raster has no CRS; assign one "
                    "(e.g. gdal_edit.py -a_srs EPSG:XXXX)"
                )
            transform = dataset.transform
            if transform.is_identity:
                # GDAL's answer when the file has no geotransform: pixels would land at
                # (0, 0) with 1-unit pixels
                raise InputError(
                    f"{path}: the raster has a CRS but no geotransform (where its pixels lie "
                    "and how large they are); assign one (e.g. gdal_edit.py -a_ullr ULX ULY "
                    "LRX LRY, or -a_gt)"
                )
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
                common_names=tuple(
                    dataset.tags(index).get("common_name", "")
                    for index in range(1, dataset.count + 1)
                ),
            )
    except RasterioIOError as error:
        raise RasterReadError(f"{path}: not a readable raster ({error})") from None


def _read_boundless(
    dataset: DatasetReader, window: PixelWindow, indexes: list[int], fill: float
) -> NDArray[np.generic]:
    """Bands ``indexes`` of ``window``; pixels outside the raster get ``fill``."""
    inside = window.clip(dataset.height, dataset.width)
    dtype = np.dtype(dataset.dtypes[indexes[0] - 1])
    if inside == window:
        data: NDArray[np.generic] = dataset.read(indexes, window=window.to_rasterio())
        return data
    out = np.full((len(indexes), window.height, window.width), fill, dtype=dtype)
    if not inside.is_empty:
        rows, cols = inside.shift(-window.row, -window.col).slices()
        out[:, rows, cols] = dataset.read(indexes, window=inside.to_rasterio())
    return out


def _mask_boundless(dataset: DatasetReader, window: PixelWindow) -> NDArray[np.bool_]:
    """GDAL's dataset mask of ``window``; pixels outside the raster are invalid."""
    inside = window.clip(dataset.height, dataset.width)
    out = np.zeros(window.shape, dtype=bool)
    if not inside.is_empty:
        rows, cols = inside.shift(-window.row, -window.col).slices()
        out[rows, cols] = dataset.dataset_mask(window=inside.to_rasterio()) > 0
    return out


def gdal_reason(error: BaseException) -> str:
    """GDAL's messages behind ``error``, joined (rasterio's own says "see previous exception")."""
    messages: list[str] = []
    cause: BaseException | None = error
    while cause is not None:
        if "previous exception" not in str(cause):
            messages.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    return ": ".join(messages) or str(error)


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
        with open_raster(path) as dataset:
            indexes = bands or list(range(1, dataset.count + 1))
            fill = fill_value if fill_value is not None else (dataset.nodata or 0)
            return _read_boundless(dataset, window, indexes, fill)
    except RasterioIOError as error:
        raise RasterReadError(
            f"{path}: reading rows {window.row}-{window.row_stop}, cols {window.col}-"
            f"{window.col_stop} failed; the file may be truncated or corrupt "
            f"({gdal_reason(error)})"
        ) from None


def read_valid_mask(path: str | Path, window: PixelWindow) -> NDArray[np.bool_]:
    """Pixels of ``window`` that hold data in every band (GDAL dataset mask).

    Respects nodata values, internal masks and alpha bands; pixels outside the
    raster are invalid.
    """
    try:
        with open_raster(path) as dataset:
            return _mask_boundless(dataset, window)
    except RasterioIOError as error:
        raise RasterReadError(f"{path}: reading the validity mask failed ({error})") from None


READ_CACHE_BYTES = 64 * 2**20
"""Bound of GDAL's block cache while :func:`read_window_masked` reads (per process).

Tiles overlap their upper neighbours, so a tile row decodes again the last
block row of the one above unless it is still cached. Two workers taking every
other batch of 512 px tiles from scenes of 256 px deflate blocks read 6.7 /
7.7 ms per tile at 8192 / 16384 px with 64 MB, 6.8 / 7.9 with 128 MB and 7.6 /
9.0 with 32 MB; a larger cache only holds more memory once a scene is big
enough to fill it.
"""

OPEN_DATASETS_PER_THREAD = 4
"""How many datasets :func:`read_window_masked` keeps open per process and thread."""

_open_datasets: threading.local = threading.local()


def _cached_dataset(path: str | Path, allow_vrt: bool) -> DatasetReader:
    """``path`` opened once per process and thread, reopened when the file changes."""
    stat = os.stat(path)
    key = (
        os.path.realpath(path),
        stat.st_ino,
        stat.st_size,
        stat.st_mtime_ns,
        os.getpid(),
        allow_vrt,
    )
    datasets: OrderedDict[tuple[object, ...], DatasetReader] | None = getattr(
        _open_datasets, "datasets", None
    )
    if datasets is None:
        datasets = _open_datasets.datasets = OrderedDict()
    dataset = datasets.get(key)
    if dataset is not None:
        datasets.move_to_end(key)
        return dataset
    dataset = open_raster(path, allow_vrt=allow_vrt)
    datasets[key] = dataset
    while len(datasets) > OPEN_DATASETS_PER_THREAD:
        _, oldest = datasets.popitem(last=False)
        oldest.close()
    return dataset


def _in_every_band(
    values: NDArray[np.generic],
    nodata: float,
    compare: Callable[..., NDArray[np.bool_]],
) -> NDArray[np.bool_]:
    """Pixels where ``compare(band, nodata)`` holds in every band of ``values``.

    ``compare`` is ``np.equal`` or ``np.not_equal``: one comparison per band
    into a reused buffer, no ``(bands, h, w)`` temporary.
    """
    fill = values.dtype.type(nodata)
    result: NDArray[np.bool_] = compare(values[0], fill)
    scratch = np.empty(result.shape, dtype=bool)
    for band in values[1:]:
        compare(band, fill, out=scratch)
        result &= scratch
    return result


def _mask_from_values(
    dataset: DatasetReader,
    indexes: list[int],
    values: NDArray[np.generic],
    window: PixelWindow,
    any_nodata_invalid: bool,
) -> NDArray[np.bool_] | None:
    """The mask :func:`read_window_masked` returns, when it follows from ``values`` alone.

    That is the case when every band is valid everywhere (then only pixels
    outside the raster are invalid), or when the raster's validity comes from
    one integer nodata value shared by its bands, with no mask or alpha band,
    and ``values`` hold every band (GDAL's mask is then "some band is not
    nodata") or ``any_nodata_invalid`` asks for "no band is nodata", which the
    read bands alone decide. No band is decoded a second time; pixels outside
    the raster were filled with nodata, so they come out invalid. None otherwise.
    """
    flags = {tuple(band) for band in dataset.mask_flag_enums}
    if flags == {(MaskFlags.all_valid,)}:
        inside = np.zeros(window.shape, dtype=bool)
        rows, cols = (
            window.clip(dataset.height, dataset.width).shift(-window.row, -window.col).slices()
        )
        inside[rows, cols] = True
        return inside
    nodata = dataset.nodata
    if (
        flags == {(MaskFlags.nodata,)}
        and (any_nodata_invalid or sorted(indexes) == list(range(1, dataset.count + 1)))
        and ColorInterp.alpha not in dataset.colorinterp
        and np.issubdtype(values.dtype, np.integer)
        and nodata is not None
        and all(value == nodata for value in dataset.nodatavals)
        and float(nodata).is_integer()
        and np.can_cast(np.min_scalar_type(int(nodata)), values.dtype)
    ):
        if any_nodata_invalid:  # no band at nodata
            return _in_every_band(values, nodata, np.not_equal)
        return ~_in_every_band(values, nodata, np.equal)  # not every band at nodata
    return None


def _held_blocks(
    dataset: DatasetReader, window: PixelWindow, indexes: list[int]
) -> NDArray[np.bool_] | None:
    """Pixels of ``window`` inside blocks the file holds; None when it holds them all.

    A sparse GeoTIFF (``SPARSE_OK``) leaves blocks unwritten: their offset in
    the TIFF is 0 and GDAL reports no ``BLOCK_OFFSET_<col>_<row>`` for them
    (metadata domain ``TIFF``). Only the blocks under ``window`` are looked
    at; a block missing from any read band makes its pixels invalid. Pixels
    outside the raster count as held (they are invalid anyway).
    """
    if dataset.driver != "GTiff":
        return None
    inside = window.clip(dataset.height, dataset.width)
    if inside.is_empty:
        return None
    block_rows, block_cols = dataset.block_shapes[0]
    interleaved = dataset.interleaving is not None and dataset.interleaving.value == "PIXEL"
    bands = indexes[:1] if interleaved else sorted(set(indexes))
    held: NDArray[np.bool_] | None = None
    for block_row in range(inside.row // block_rows, (inside.row_stop - 1) // block_rows + 1):
        for block_col in range(inside.col // block_cols, (inside.col_stop - 1) // block_cols + 1):
            key = f"BLOCK_OFFSET_{block_col}_{block_row}"
            if all(dataset.get_tag_item(key, "TIFF", bidx=band) for band in bands):
                continue
            if held is None:
                held = np.ones(window.shape, dtype=bool)
            block = PixelWindow(
                block_row * block_rows, block_col * block_cols, block_rows, block_cols
            )
            rows, cols = block.intersection(window).shift(-window.row, -window.col).slices()
            held[rows, cols] = False
    return held


def read_window_masked(
    path: str | Path,
    window: PixelWindow,
    *,
    bands: list[int] | None = None,
    any_nodata_invalid: bool = False,
    allow_vrt: bool = False,
) -> tuple[NDArray[np.generic], NDArray[np.bool_]]:
    """:func:`read_window` and :func:`read_valid_mask` of ``window`` in one opening.

    Pixels outside the raster are filled with the nodata value (else 0) and
    are invalid, and so are pixels of blocks a sparse GeoTIFF does not hold
    (a window of such blocks only is not read at all). The dataset stays open
    for the next read from this thread.

    Parameters
    ----------
    path, window, bands
        As for :func:`read_window`.
    any_nodata_invalid
        Also invalid where any read band holds the raster's nodata value
        (GDAL's mask only marks the pixels where every band does).
    allow_vrt
        Accept a GDAL VRT (see :func:`open_raster`).
    """
    try:
        dataset = _cached_dataset(path, allow_vrt)
        with rasterio.Env(GDAL_CACHEMAX=READ_CACHE_BYTES):
            indexes = bands or list(range(1, dataset.count + 1))
            held = _held_blocks(dataset, window, indexes)
            if held is not None and not held.any():
                fill = dataset.nodata or 0
                dtype = np.dtype(dataset.dtypes[indexes[0] - 1])
                empty = np.full((len(indexes), *window.shape), fill, dtype=dtype)
                return empty, held
            values = _read_boundless(dataset, window, indexes, dataset.nodata or 0)
            mask = _mask_from_values(dataset, indexes, values, window, any_nodata_invalid)
            if mask is None:
                mask = _mask_boundless(dataset, window)
                if any_nodata_invalid and dataset.nodata is not None:
                    mask &= np.all(values != dataset.nodata, axis=0)
            if held is not None:
                mask &= held
            return values, mask
    except GeosegError:
        raise
    except (RasterioIOError, OSError) as error:
        raise RasterReadError(
            f"{path}: reading rows {window.row}-{window.row_stop}, cols {window.col}-"
            f"{window.col_stop} failed; the file may be truncated or corrupt "
            f"({gdal_reason(error)})"
        ) from None
