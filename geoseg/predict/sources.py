"""Where the engine's pixels come from: the small ``RasterSource`` protocol.

The prediction engine needs only three things from its input: the pixel grid,
the names of the bands it delivers, and boundless windowed reads in physical
units with a validity mask. :class:`FileSource` implements this over one
GeoTIFF; a mosaic of several scenes warped onto one grid can implement the
same protocol. Sources must be picklable (they travel to Dask workers) and
cheap to pickle: they hold paths and metadata, never open datasets or pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from geoseg.areas import pixel_size_m as ground_pixel_size_m
from geoseg.errors import InputError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.io.raster import read_info, read_window_masked
from geoseg.io.warp import read_mask_on_grid
from geoseg.limits import MAX_PIXELS
from geoseg.predict.preprocess import (
    PhysicalValues,
    band_names_from_metadata,
    resolve_band_indexes,
)
from geoseg.quality import QualityMask, check_buffer, mask_with_halo


@runtime_checkable
class RasterSource(Protocol):
    """A scene the engine can read window by window.

    Attributes
    ----------
    grid
        The pixel grid of the scene (the output has exactly this grid).
    band_names
        Common names of the bands :meth:`read` returns, in that order.
    identity
        A string that changes whenever the pixels may change (path, size and
        modification time, or checksums); it keys resumable work directories.
    label
        A short human name (a path) for messages.
    """

    @property
    def grid(self) -> RasterGrid:
        """The scene's pixel grid."""
        ...

    @property
    def band_names(self) -> list[str]:
        """Names of the bands :meth:`read` returns."""
        ...

    @property
    def identity(self) -> str:
        """Changes whenever the source's pixels may change."""
        ...

    @property
    def label(self) -> str:
        """Human name for messages."""
        ...

    def read(self, window: PixelWindow) -> tuple[PhysicalValues, NDArray[np.bool_]]:
        """Read ``window`` (may extend past the scene).

        Returns
        -------
        tuple
            ``(bands, h, w)`` values in physical units and an ``(h, w)``
            validity mask; pixels outside the scene are invalid. Values are
            float32, or integers that float32 holds exactly (8 or 16 bits).
        """
        ...


@dataclass(frozen=True)
class FileSource:
    """One raster file as a :class:`RasterSource`.

    Build it with :meth:`open`, which reads the metadata once.
    """

    path: Path
    grid: RasterGrid
    band_names: list[str]
    band_indexes: tuple[int, ...]
    scales: tuple[float, ...]
    offsets: tuple[float, ...]
    nodata: float | None
    identity: str
    allow_vrt: bool = False

    @property
    def label(self) -> str:
        """The file path."""
        return str(self.path)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        band_map: Mapping[str, int] | None = None,
        scales: Sequence[float] | None = None,
        offsets: Sequence[float] | None = None,
        max_pixels: int = MAX_PIXELS,
        allow_vrt: bool = False,
    ) -> FileSource:
        """Describe ``path`` as a source.

        Parameters
        ----------
        path
            The raster file.
        band_map
            ``{name: 1-based index}``: the source then delivers exactly these
            bands in this order. Default: every band, named from the raster's
            band descriptions (``B2_blue`` -> ``blue``).
        scales, offsets
            Per delivered band, overriding the raster's own scale/offset
            (``physical = raw * scale + offset``).
        max_pixels, allow_vrt
            As for :func:`geoseg.io.raster.read_info`.

        Raises
        ------
        RasterReadError
            Missing, unreadable or not a raster.
        InputError
            No CRS or geotransform, a VRT without ``allow_vrt``, a declared size
            beyond ``max_pixels``, or scale/offset overrides of the wrong length.
        BandMismatchError
            ``band_map`` names a band index the raster lacks.
        """
        path = Path(path)
        info = read_info(path, max_pixels=max_pixels, allow_vrt=allow_vrt)
        available = band_names_from_metadata(info.descriptions, info.common_names)
        if band_map is not None:
            names = list(band_map)
            indexes = resolve_band_indexes(str(path), names, available, band_map)
        else:
            names = available
            indexes = list(range(1, info.count + 1))
        band_scales = [info.scales[i - 1] for i in indexes] if scales is None else list(scales)
        band_offsets = [info.offsets[i - 1] for i in indexes] if offsets is None else list(offsets)
        if len(band_scales) != len(indexes) or len(band_offsets) != len(indexes):
            raise InputError(
                f"{path}: give one scale and one offset per band ({len(indexes)} bands)"
            )
        stat = path.stat()
        identity = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{indexes}"
        return cls(
            path=path,
            grid=info.grid,
            band_names=names,
            band_indexes=tuple(indexes),
            scales=tuple(float(v) for v in band_scales),
            offsets=tuple(float(v) for v in band_offsets),
            nodata=info.nodata,
            identity=f"{identity}|{band_scales}|{band_offsets}",
            allow_vrt=allow_vrt,
        )

    def read(self, window: PixelWindow) -> tuple[PhysicalValues, NDArray[np.bool_]]:
        """Boundless read of ``window`` in physical units, with its validity mask.

        Pixels where any band holds the nodata value are invalid. Values of 8-
        and 16-bit integer bands without scale or offset come in their own
        type (float32 holds them exactly), anything else as float32.
        """
        raw, valid = read_window_masked(
            self.path,
            window,
            bands=list(self.band_indexes),
            any_nodata_invalid=self.nodata is not None,
            allow_vrt=self.allow_vrt,
        )
        scales = np.asarray(self.scales, dtype=np.float32)[:, None, None]
        offsets = np.asarray(self.offsets, dtype=np.float32)[:, None, None]
        scaled = bool(np.any(scales != 1) or np.any(offsets != 0))
        if not scaled and raw.dtype.kind in "iu" and np.can_cast(raw.dtype, np.float32):
            exact: PhysicalValues = raw  # type: ignore[assignment]  # checked just above
            return exact, valid
        data = raw.astype(np.float32)
        if scaled:
            data = data * scales + offsets
        if scaled or not np.issubdtype(raw.dtype, np.integer):
            # integers converted to float32 are always finite
            valid &= np.all(np.isfinite(data), axis=0)
        return data, valid


@dataclass(frozen=True)
class MaskedSource:
    """A :class:`RasterSource` whose pixels marked in user mask rasters are invalid.

    A mask raster (band 1, non-zero = masked) is read onto the source's grid
    (nearest, any CRS); its masked pixels grow by ``buffer`` pixels (read with
    that halo, so the result does not depend on the window). Build it with
    :meth:`open`, which checks the masks once.
    """

    source: RasterSource
    masks: tuple[Path, ...]
    buffer: int
    identity: str

    @classmethod
    def open(cls, source: RasterSource, masks: Sequence[str | Path], buffer: int) -> MaskedSource:
        """``source`` masked by ``masks`` grown by ``buffer`` pixels.

        Raises
        ------
        RasterReadError
            A mask is missing, unreadable or not a raster.
        InputError
            ``buffer`` out of range, or a mask without a CRS.
        """
        check_buffer(buffer)
        paths = tuple(Path(mask) for mask in masks)
        parts = [source.identity, f"buffer={buffer}"]
        for path in paths:
            read_info(path)  # a clear error now rather than on a worker
            stat = path.stat()
            parts.append(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}")
        return cls(source, paths, buffer, "|".join(parts))

    @property
    def grid(self) -> RasterGrid:
        """The wrapped source's grid."""
        return self.source.grid

    @property
    def band_names(self) -> list[str]:
        """The wrapped source's bands."""
        return self.source.band_names

    @property
    def label(self) -> str:
        """The source and its masks, for messages."""
        return f"{self.source.label} masked by {', '.join(map(str, self.masks))}"

    def masked(self, window: PixelWindow) -> NDArray[np.bool_]:
        """Pixels of ``window`` the masks mark, grown by the buffer."""

        def read(padded: PixelWindow) -> QualityMask:
            marked = read_mask_on_grid(self.masks, self.grid, padded)
            return QualityMask(marked, marked)

        return mask_with_halo(read, window, self.buffer)

    def read(self, window: PixelWindow) -> tuple[PhysicalValues, NDArray[np.bool_]]:
        """The wrapped source's read, masked pixels made invalid."""
        values, valid = self.source.read(window)
        return values, valid & ~self.masked(window)


def zoom_factor(grid: RasterGrid, pixel_size_m: float) -> int:
    """The whole factor that brings ``grid``'s pixels nearest to ``pixel_size_m`` (at least 1).

    A 10 m grid and a 30 m model give 3; a 30 m grid gives 1 (never finer).
    """
    return max(1, round(pixel_size_m / ground_pixel_size_m(grid)))


@dataclass(frozen=True)
class ZoomedSource:
    """A source read at pixels ``factor`` times larger: the mean of each block's valid pixels.

    The zoomed grid is :meth:`RasterGrid.zoom_out` of the inner grid (same
    origin and CRS); a zoomed pixel is valid when any pixel of its
    ``factor`` x ``factor`` block is. Used to read 10 m scenes for a 30 m
    model (block averaging, as the coarser sensor integrates the ground). The
    inner source may be any :class:`RasterSource` (a file, a masked file, a
    catalog mosaic on its fine grid).
    """

    inner: RasterSource
    factor: int

    @property
    def grid(self) -> RasterGrid:
        """The zoomed-out grid."""
        return self.inner.grid.zoom_out(self.factor)

    @property
    def band_names(self) -> list[str]:
        """The inner source's band names."""
        return self.inner.band_names

    @property
    def identity(self) -> str:
        """The inner identity and the factor."""
        return f"{self.inner.identity}|zoom{self.factor}"

    @property
    def label(self) -> str:
        """The inner label."""
        return self.inner.label

    def read(self, window: PixelWindow) -> tuple[PhysicalValues, NDArray[np.bool_]]:
        """Block means of the inner pixels under ``window`` (see the class docstring)."""
        factor = self.factor
        inner_window = PixelWindow(
            window.row * factor, window.col * factor, window.height * factor, window.width * factor
        )
        values, valid = self.inner.read(inner_window)
        return block_mean(values, valid, factor)


def block_mean(
    values: PhysicalValues, valid: NDArray[np.bool_], factor: int
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Mean of the valid pixels of each ``factor`` x ``factor`` block, and where any was valid."""
    bands, height, width = values.shape
    shape = (bands, height // factor, factor, width // factor, factor)
    sums = np.where(valid[None], values, 0).astype(np.float64).reshape(shape).sum(axis=(2, 4))
    counts = valid.reshape(shape[1:]).sum(axis=(1, 3))
    zoomed_valid = counts > 0
    means = np.divide(sums, np.maximum(counts, 1.0)[None]).astype(np.float32)
    return means, zoomed_valid
