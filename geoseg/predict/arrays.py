"""Scenes held in xarray: a labelled array normalised into what the engine reads.

Analysts load scenes lazily with ``rioxarray.open_rasterio``, ``odc.stac.load``
or ``stackstac.stack``; their results differ in how bands are laid out and
named and in where the grid is recorded:

============================  =======================  ===============================
library                       bands                    names
============================  =======================  ===============================
``rioxarray.open_rasterio``   dimension ``band`` (1..n)  attribute ``long_name`` (``B2_blue``)
``odc.stac.load``             one variable per band     asset keys or ``eo:bands`` names
``stackstac.stack``           dimension ``band``       asset keys, coordinate ``common_name``
============================  =======================  ===============================

:func:`scene_array` brings any of these to one :class:`SceneArray`: the
``(band, y, x)`` array of every band with its name, the pixel grid (CRS and
transform from the coordinates: pixel centres for rioxarray and odc-geo,
top-left corners for stackstac, told apart by its ``transform`` attribute),
and the nodata value. :class:`WindowSource` is the engine's
:class:`~geoseg.predict.sources.RasterSource` over windows already read from
it (a task receives its windows as arrays). Nothing here imports Dask: the
array's ``data`` may be a dask array, and ``workflows/segment.py`` builds the
graph.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine
from numpy.typing import NDArray
from rasterio.crs import CRS

from geoseg.errors import BandMismatchError, InputError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.predict.preprocess import PhysicalValues, band_name_from_description
from geoseg.predict.sources import block_mean

BAND_DIMS = ("band", "bands", "variable", "channel")
"""Dimension names taken for the band axis."""
Y_DIMS = ("y", "latitude", "lat")
X_DIMS = ("x", "longitude", "lon")


@dataclass(frozen=True)
class SceneArray:
    """A scene in xarray, normalised: ``(band, y, x)`` data, band names, grid, nodata."""

    data: xr.DataArray
    """``(band, y, x)``; its ``.data`` may be lazy (dask)."""
    band_names: list[str]
    """The name of each band of ``data``, as the model cards name bands (common names)."""
    grid: RasterGrid
    nodata: float | None
    """Raw value marking invalid pixels (besides NaN), or None."""


def _dimension(data: xr.DataArray, names: Sequence[str], what: str) -> Hashable:
    for name in names:
        if name in data.dims:
            return name
    raise InputError(
        f"DataArray {data.name or ''} with dimensions {tuple(data.dims)} has no {what} "
        f"dimension; name it one of {', '.join(names)}"
    )


def _as_data_array(data: xr.DataArray | xr.Dataset) -> xr.DataArray:
    """A Dataset of one variable per band (``odc.stac.load``) as a DataArray ``band``."""
    if isinstance(data, xr.DataArray):
        return data
    names = [name for name, variable in data.data_vars.items() if variable.ndim >= 2]
    if not names:
        raise InputError("the Dataset holds no raster variable (none with y and x dimensions)")
    stacked = data[names].to_dataarray(dim="band")
    nodata = {data[name].attrs.get("nodata") for name in names} - {None}
    if len(nodata) == 1:
        stacked.attrs["nodata"] = nodata.pop()
    return stacked


def _squeeze_extra(data: xr.DataArray, keep: Sequence[Hashable]) -> xr.DataArray:
    for dim in list(data.dims):
        if dim in keep:
            continue
        if data.sizes[dim] != 1:
            raise InputError(
                f"the array has {data.sizes[dim]} steps along {dim!r}; segment one at a time "
                f"(e.g. data.isel({dim}=0)) or reduce them first (a median composite)"
            )
        data = data.isel({dim: 0})
    return data


def _names_of_bands(data: xr.DataArray, band_dim: Hashable) -> list[str]:
    labels = [str(value) for value in data[band_dim].values] if band_dim in data.coords else []
    if "common_name" in data.coords and data.coords["common_name"].dims == (band_dim,):
        commons = [str(value) for value in data.coords["common_name"].values]
        return [common or label for common, label in zip(commons, labels, strict=True)]
    descriptions = data.attrs.get("long_name")
    if isinstance(descriptions, (tuple, list)) and len(descriptions) == data.sizes[band_dim]:
        return [band_name_from_description(str(text)) for text in descriptions]
    if labels and not all(label.isdigit() for label in labels):
        return [band_name_from_description(label) for label in labels]
    return [f"band{index + 1}" for index in range(data.sizes[band_dim])]


def _crs(data: xr.DataArray) -> CRS:
    for candidate in (data.attrs.get("crs"), _spatial_ref_wkt(data), _epsg_coordinate(data)):
        if candidate:
            return CRS.from_user_input(candidate)
    raise InputError(
        "the array has no CRS: give it one (data.rio.write_crs('EPSG:32612') with rioxarray, "
        "or load it with odc.stac / stackstac, which record it)"
    )


def _spatial_ref_wkt(data: xr.DataArray) -> str | None:
    if "spatial_ref" not in data.coords:
        return None
    attrs = data.coords["spatial_ref"].attrs
    value = attrs.get("crs_wkt") or attrs.get("spatial_ref")
    return str(value) if value else None


def _epsg_coordinate(data: xr.DataArray) -> int | None:
    if "epsg" in data.coords and data.coords["epsg"].ndim == 0:
        return int(data.coords["epsg"].values)
    return None


def _step(coords: NDArray[np.float64], what: str, declared: float | None) -> float:
    if len(coords) >= 2:
        steps = np.diff(coords)
        if not np.allclose(steps, steps[0], rtol=1e-9, atol=0):
            raise InputError(f"the {what} coordinates are not evenly spaced; resample the array")
        return float(steps[0])
    if declared is None:
        raise InputError(f"one pixel along {what} and no transform attribute: pixel size unknown")
    return declared


def _grid(data: xr.DataArray, y_dim: Hashable, x_dim: Hashable) -> RasterGrid:
    """The grid from the coordinates (pixel centres, or corners under a stackstac transform)."""
    declared = data.attrs.get("transform")
    declared_affine = Affine(*declared[:6]) if declared is not None else None
    xs = np.asarray(data[x_dim].values, dtype=np.float64)
    ys = np.asarray(data[y_dim].values, dtype=np.float64)
    dx = _step(xs, "x", declared_affine.a if declared_affine else None)
    dy = _step(ys, "y", declared_affine.e if declared_affine else None)
    corner = False
    if declared_affine is not None:  # stackstac: coordinates are the pixels' top-left corners
        offset = (xs[0] - declared_affine.c) / dx
        corner = abs(offset - round(offset)) < 1e-6
    shift = 0.0 if corner else 0.5
    transform = Affine(dx, 0.0, xs[0] - shift * dx, 0.0, dy, ys[0] - shift * dy)
    return RasterGrid(crs=_crs(data), transform=transform, height=len(ys), width=len(xs))


def _nodata(data: xr.DataArray) -> float | None:
    for key in ("nodata", "_FillValue"):
        value = data.attrs.get(key)
        if value is not None and not (isinstance(value, float) and np.isnan(value)):
            return float(value)
    return None


def scene_array(
    data: xr.DataArray | xr.Dataset,
    *,
    bands: Mapping[str, Hashable] | None = None,
    nodata: float | None = None,
) -> SceneArray:
    """Normalise a scene loaded by rioxarray, odc-stac or stackstac (or built by hand).

    Parameters
    ----------
    data
        A DataArray with ``y`` and ``x`` dimensions and optionally a band
        dimension (``band``, ``variable``...), or a Dataset of one variable per
        band. Other dimensions (``time``) must have length 1.
    bands
        ``{model band name: label along the band dimension}`` when the array's
        band names are not the model's (e.g. ``{"blue": "B2", "nir": "B5"}`` or
        ``{"blue": 1}`` for rioxarray's band numbers). Default: names from a
        ``common_name`` coordinate (stackstac), the ``long_name`` band
        descriptions (rioxarray; ``B2_blue`` is ``blue``) or the band labels.
    nodata
        Raw value of invalid pixels; default the ``nodata`` or ``_FillValue``
        attribute. NaN is always invalid.

    Raises
    ------
    InputError
        No ``y``/``x`` dimension, no CRS, uneven coordinates, or a non-band
        dimension longer than 1.
    BandMismatchError
        ``bands`` names a label the array lacks.
    """
    array = _as_data_array(data)
    y_dim = _dimension(array, Y_DIMS, "y")
    x_dim = _dimension(array, X_DIMS, "x")
    band_dim = next((name for name in BAND_DIMS if name in array.dims), None)
    if band_dim is None:
        array = array.expand_dims("band")
        band_dim = "band"
    array = _squeeze_extra(array, (band_dim, y_dim, x_dim)).transpose(band_dim, y_dim, x_dim)
    names = _names_of_bands(array, band_dim)
    if bands is not None:
        labels = list(array[band_dim].values) if band_dim in array.coords else []
        missing = [str(label) for label in bands.values() if label not in labels]
        if missing:
            raise BandMismatchError(
                f"the array has no band {', '.join(missing)} along {band_dim!r}; "
                f"it has {', '.join(str(label) for label in labels)}"
            )
        array = array.sel({band_dim: list(bands.values())})
        names = list(bands)
    return SceneArray(
        data=array,
        band_names=names,
        grid=_grid(array, y_dim, x_dim),
        nodata=_nodata(array) if nodata is None else nodata,
    )


def window_values(
    raw: NDArray[Any], nodata: float | None
) -> tuple[PhysicalValues, NDArray[np.bool_]]:
    """Engine values and validity of raw ``(bands, h, w)`` pixels, as a file source reads them.

    Pixels where any band holds ``nodata`` or is not finite are invalid. 8-
    and 16-bit integers stay as they are (float32 holds them exactly), other
    types become float32.
    """
    valid = np.ones(raw.shape[1:], dtype=bool)
    if nodata is not None:
        valid &= ~np.any(raw == nodata, axis=0)
    if raw.dtype.kind in "iu" and np.can_cast(raw.dtype, np.float32):
        exact: PhysicalValues = raw  # checked just above: 8 or 16-bit integers
        return exact, valid
    values = raw.astype(np.float32)
    if raw.dtype.kind not in "iu":
        valid &= np.all(np.isfinite(values), axis=0)
    return values, valid


def zoomed_values(raw: NDArray[Any], nodata: float | None, factor: int) -> NDArray[np.float32]:
    """Raw ``(bands, h, w)`` pixels as block means of valid pixels, NaN where a block has none.

    The values and validity are :func:`window_values`'; blocks are ``factor`` x
    ``factor`` from the array's first pixel, the last row and column of blocks
    padded with invalid pixels (as :class:`~geoseg.predict.sources.ZoomedSource`
    reads past a scene's edge), so the result has ``ceil(h / factor)`` x
    ``ceil(w / factor)`` pixels and equals a zoomed file read of the same pixels.
    """
    values, valid = window_values(raw, nodata)
    height, width = valid.shape
    pad_rows, pad_cols = -height % factor, -width % factor
    if pad_rows or pad_cols:
        padded: PhysicalValues = np.pad(values, ((0, 0), (0, pad_rows), (0, pad_cols)))  # type: ignore[assignment]  # the same dtype
        values = padded
        valid = np.pad(valid, ((0, pad_rows), (0, pad_cols)))
    means, zoomed_valid = block_mean(values, valid, factor)
    means[:, ~zoomed_valid] = np.nan
    return means


def pad_window(
    values: PhysicalValues, valid: NDArray[np.bool_], inside: PixelWindow, window: PixelWindow
) -> tuple[PhysicalValues, NDArray[np.bool_]]:
    """Place the part ``inside`` the scene of a boundless ``window`` read; invalid elsewhere."""
    if inside == window:
        return values, valid
    padded: PhysicalValues = np.zeros(  # type: ignore[assignment]  # same dtype as values
        (values.shape[0], *window.shape), dtype=values.dtype
    )
    padded_valid = np.zeros(window.shape, dtype=bool)
    rows, cols = inside.shift(-window.row, -window.col).slices()
    padded[:, rows, cols] = values
    padded_valid[rows, cols] = valid
    return padded, padded_valid


@dataclass(frozen=True)
class WindowSource:
    """A :class:`~geoseg.predict.sources.RasterSource` over windows already read.

    A task of ``workflows/segment.py`` receives the windows its tiles need as
    arrays and reads them through this source; asking for another window is a
    programming error.
    """

    grid: RasterGrid
    band_names: list[str]
    label: str
    windows: Mapping[PixelWindow, tuple[PhysicalValues, NDArray[np.bool_]]] = field(
        default_factory=dict, hash=False
    )

    @property
    def identity(self) -> str:
        """No work directory is keyed by an in-memory scene: its label."""
        return self.label

    def read(self, window: PixelWindow) -> tuple[PhysicalValues, NDArray[np.bool_]]:
        """The window as it was read."""
        try:
            return self.windows[window]
        except KeyError:
            raise KeyError(f"{self.label}: window {window} was not read for this task") from None
