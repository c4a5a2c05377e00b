"""Immutable value types for raster grids and pixel windows.

Axis order is always explicit: windows are ``(row, col)`` with sizes
``(height, width)``; coordinates are ``(x, y)``. A :class:`RasterGrid` carries
its CRS, affine transform and shape together, so no bare 4-tuple or loose
transform travels through the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from affine import Affine

from geoseg.errors import InputError

if TYPE_CHECKING:  # rasterio is not imported by ``geoseg --help``
    from rasterio.crs import CRS


@dataclass(frozen=True, slots=True)
class PixelWindow:
    """A rectangle of pixels, ``row``/``col`` of its top-left corner plus its size.

    Offsets may be negative or run past the raster (a window with a halo at a
    scene border); :meth:`clip` brings it inside.
    """

    row: int
    col: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height < 0 or self.width < 0:
            raise InputError(f"window size must be >= 0, got {self.height}x{self.width}")

    @property
    def row_stop(self) -> int:
        """One past the last row."""
        return self.row + self.height

    @property
    def col_stop(self) -> int:
        """One past the last column."""
        return self.col + self.width

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (self.height, self.width)

    def slices(self) -> tuple[slice, slice]:
        """Numpy slices ``(rows, cols)`` of this window (offsets must be >= 0)."""
        return (slice(self.row, self.row_stop), slice(self.col, self.col_stop))

    def intersection(self, other: PixelWindow) -> PixelWindow:
        """The overlap of two windows (an empty window when they do not overlap)."""
        row = max(self.row, other.row)
        col = max(self.col, other.col)
        row_stop = min(self.row_stop, other.row_stop)
        col_stop = min(self.col_stop, other.col_stop)
        return PixelWindow(row, col, max(0, row_stop - row), max(0, col_stop - col))

    def clip(self, height: int, width: int) -> PixelWindow:
        """This window clipped to a raster of ``height`` x ``width``."""
        return self.intersection(PixelWindow(0, 0, height, width))

    def shift(self, drow: int, dcol: int) -> PixelWindow:
        """This window moved by ``(drow, dcol)``."""
        return PixelWindow(self.row + drow, self.col + dcol, self.height, self.width)

    def pad(self, halo: int) -> PixelWindow:
        """This window grown by ``halo`` pixels on every side."""
        return PixelWindow(
            self.row - halo, self.col - halo, self.height + 2 * halo, self.width + 2 * halo
        )

    @property
    def is_empty(self) -> bool:
        """True when the window has no pixels."""
        return self.height == 0 or self.width == 0

    def chunk_rows(self, size: int) -> tuple[tuple[PixelWindow, ...], ...]:
        """Windows of at most ``size`` x ``size`` pixels covering this window, row by row.

        Rows go top to bottom and each row left to right, starting at this
        window's top-left corner; the last row and column are the smaller ones.
        An empty window has no chunks (and no rows).

        Raises
        ------
        InputError
            ``size`` is not positive (see :func:`check_chunk_size`).
        """
        check_chunk_size(size)
        if self.is_empty:
            return ()
        return tuple(
            tuple(
                PixelWindow(
                    row, col, min(size, self.row_stop - row), min(size, self.col_stop - col)
                )
                for col in range(self.col, self.col_stop, size)
            )
            for row in range(self.row, self.row_stop, size)
        )

    def chunks(self, size: int) -> tuple[PixelWindow, ...]:
        """The windows of :meth:`chunk_rows` in row-major order."""
        return tuple(window for row in self.chunk_rows(size) for window in row)

    def to_rasterio(self) -> Any:
        """The equivalent :class:`rasterio.windows.Window`."""
        from rasterio.windows import Window

        return Window(self.col, self.row, self.width, self.height)


@dataclass(frozen=True, slots=True)
class RasterGrid:
    """A georeferenced pixel grid: CRS, affine transform and ``(height, width)``."""

    crs: CRS
    transform: Affine
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise InputError(f"a raster grid needs a positive size, got {self.height}x{self.width}")

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (self.height, self.width)

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` in CRS units, both positive (north-up grids)."""
        return (abs(self.transform.a), abs(self.transform.e))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in CRS units."""
        left, top = self.transform @ (0, 0)
        right, bottom = self.transform @ (self.width, self.height)
        return (min(left, right), min(top, bottom), max(left, right), max(top, bottom))

    @property
    def is_north_up(self) -> bool:
        """True when the transform has no rotation or shear."""
        return self.transform.b == 0 and self.transform.d == 0

    def window_transform(self, window: PixelWindow) -> Affine:
        """The affine transform of ``window``'s top-left pixel."""
        return self.transform @ Affine.translation(window.col, window.row)

    def subgrid(self, window: PixelWindow) -> RasterGrid:
        """The grid of the pixels inside ``window`` (clipped to this grid)."""
        clipped = window.clip(self.height, self.width)
        return RasterGrid(self.crs, self.window_transform(clipped), clipped.height, clipped.width)

    @property
    def full_window(self) -> PixelWindow:
        """The window covering the whole grid."""
        return PixelWindow(0, 0, self.height, self.width)

    def chunks(self, size: int) -> tuple[PixelWindow, ...]:
        """Chunks of at most ``size`` x ``size`` pixels covering the grid, in row-major order.

        The order (and so the chunks' numbering) never changes: outputs and
        resumable work folders are named after it.

        Raises
        ------
        InputError
            ``size`` is not positive.
        """
        return self.full_window.chunks(size)

    def chunk_rows(self, size: int) -> tuple[tuple[PixelWindow, ...], ...]:
        """The chunks of :meth:`chunks` grouped in rows (for ``dask.array.block``)."""
        return self.full_window.chunk_rows(size)

    def zoom_out(self, factor: int) -> RasterGrid:
        """The grid of the same extent with pixels ``factor`` times larger.

        The last row and column cover the rest of the extent (sizes round up),
        so the zoomed-out grid may reach a little past this one.

        Raises
        ------
        InputError
            ``factor`` is not a positive whole number.
        """
        if factor < 1:
            raise InputError(f"a grid zooms out by a whole factor >= 1, got {factor}")
        if factor == 1:
            return self
        return RasterGrid(
            self.crs,
            self.transform @ Affine.scale(factor),
            -(-self.height // factor),
            -(-self.width // factor),
        )


def check_chunk_size(size: int) -> None:
    """Raise :class:`InputError` unless ``size`` is a positive number of pixels.

    The one check of every chunk size (``--chunk-size`` of every command,
    evaluation windows).
    """
    if size < 1:
        raise InputError(
            f"chunk size (--chunk-size) must be a positive number of pixels, got {size}"
        )
