"""Budgets that refuse inputs before any work: the declared size of a raster or grid.

A raster's header says how many pixels it has; a sparse GeoTIFF can declare
10^6 x 10^6 px x 4 bands in a few hundred kilobytes. Its size is checked
against :data:`MAX_PIXELS` (``--max-pixels``) before a pixel is read, and so
is the grid of a catalog run. Pure: no file is opened here.
"""

from __future__ import annotations

from geoseg.errors import InputError

MAX_PIXELS = 2_500_000_000
"""Default budget of declared rows x columns (50000 x 50000 px).

A Landsat scene is 6e7 px and a Sentinel-2 tile 1.2e8; ``--max-pixels``
raises the budget for larger mosaics.
"""

DEFAULT_MASK_BUFFER = 3
"""Pixels clouds and cloud shadows are grown by (Fmask's default dilation, 3 px)."""

MAX_MASK_BUFFER = 100
"""The largest mask buffer accepted (a larger one is a typo: 3 km at 30 m)."""


def check_pixel_budget(
    label: str, height: int, width: int, bands: int, max_pixels: int = MAX_PIXELS
) -> None:
    """Refuse a raster or grid whose declared size exceeds ``max_pixels`` (rows x cols).

    Raises
    ------
    InputError
        The declared size, and how to raise the budget.
    """
    pixels = height * width
    if pixels > max_pixels:
        raise InputError(
            f"{label}: declares {height} x {width} px x {bands} bands ({pixels:.3g} px), "
            f"beyond the budget of {max_pixels:.3g} px; check the file (a sparse or "
            "damaged header?), cut it into parts, or raise --max-pixels"
        )
