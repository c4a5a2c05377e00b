"""The quicklook picture: the scene in true colour beside the class map, with a legend.

Pure rendering: arrays in, a matplotlib :class:`~matplotlib.figure.Figure` out
(Agg canvas, no pyplot state); :func:`geoseg.io.report.save_png` writes it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from numpy.typing import NDArray

from geoseg.errors import InputError
from geoseg.labels import colour_table

STRETCH_PERCENTILES = (2.0, 98.0)


@dataclass(frozen=True, slots=True)
class LegendClass:
    """One class of the map: id, name and ``(r, g, b)`` colour in 0-255."""

    id: int
    name: str
    rgb: tuple[int, int, int]


def _unit_rgb(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    return (rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0)


def stretch_rgb(values: NDArray[np.floating], valid: NDArray[np.bool_]) -> NDArray[np.uint8]:
    """``(3, rows, cols)`` values to an ``(rows, cols, 3)`` uint8 picture.

    Each band's 2nd..98th percentile of valid pixels maps to 0..255; invalid
    pixels are white.
    """
    if values.ndim != 3 or values.shape[0] != 3:
        raise InputError(f"a true-colour picture needs 3 bands, got shape {values.shape}")
    picture = np.full((*values.shape[1:], 3), 255, dtype=np.uint8)
    if not valid.any():
        return picture
    for band in range(3):
        samples = values[band][valid]
        low, high = np.percentile(samples, STRETCH_PERCENTILES)
        span = high - low if high > low else 1.0
        scaled = np.clip((values[band] - low) / span, 0.0, 1.0) * 255.0
        picture[..., band] = np.where(valid, np.round(scaled), 255).astype(np.uint8)
    return picture


def class_picture(labels: NDArray[np.integer], classes: Sequence[LegendClass]) -> NDArray[np.uint8]:
    """``(rows, cols)`` class ids to an ``(rows, cols, 4)`` RGBA picture (unknown ids clear)."""
    lookup = colour_table({spec.id: spec.rgb for spec in classes})
    return lookup[labels.astype(np.uint8)]


def quicklook_figure(
    rgb: NDArray[np.uint8],
    labels: NDArray[np.integer],
    classes: Sequence[LegendClass],
    *,
    title: str,
    caption: str = "",
    width_inches: float = 10.0,
) -> Figure:
    """Scene picture (left) and class map (right) with a legend of ``classes`` below.

    Parameters
    ----------
    rgb
        ``(rows, cols, 3)`` uint8 true-colour picture.
    labels
        ``(rows, cols)`` class ids on the same grid (ids not in ``classes`` are clear).
    classes
        The legend, in order.
    title
        Above both panels.
    caption
        Small text under the legend (sources, attribution).
    width_inches
        Figure width; the height follows the picture's aspect ratio.
    """
    if rgb.shape[:2] != labels.shape:
        raise InputError(f"picture {rgb.shape[:2]} and class map {labels.shape} differ in size")
    rows, cols = labels.shape
    panel_height = width_inches / 2 * rows / max(cols, 1)
    # a long caption (a model's attribution) wraps at the figure's width, each line 0.1 in
    caption_lines = textwrap.wrap(caption, width=int(width_inches * 18)) if caption else []
    legend_height = 0.9 + 0.1 * len(caption_lines)
    figure = Figure(
        figsize=(width_inches, panel_height + legend_height + 0.3), layout="constrained"
    )
    FigureCanvasAgg(figure)
    panels = figure.subplot_mosaic(
        [["scene", "map"], ["legend", "legend"]], height_ratios=[panel_height, legend_height]
    )
    left, right, bottom = panels["scene"], panels["map"], panels["legend"]
    left.imshow(rgb, interpolation="nearest")
    left.set_title("scene (true colour)", fontsize=9)
    right.imshow(class_picture(labels, classes), interpolation="nearest")
    right.set_title("class map", fontsize=9)
    for axes in (left, right):
        axes.set_xticks([])
        axes.set_yticks([])
    figure.suptitle(title, fontsize=10)
    handles = [Patch(facecolor=_unit_rgb(spec.rgb), label=spec.name) for spec in classes]
    bottom.axis("off")
    bottom.legend(
        handles=handles, loc="upper center", ncols=min(4, len(handles)), fontsize=8, frameon=False
    )
    if caption:
        bottom.text(
            0.5, 0.0, "\n".join(caption_lines), ha="center", va="bottom", fontsize=6, color="0.3"
        )
    return figure
