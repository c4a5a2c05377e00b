"""A self-contained HTML report of one change run: map, per-region table, loss time series.

:func:`build_report` returns the whole page as one string. Nothing in it is
fetched from the network: the scene quicklook is embedded as a base64 PNG, the
change polygons and the time-series chart are inline SVG, and the styles are
inline, so the file works offline and can be mailed or archived as it is.
The same inputs always give the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from PIL import Image
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
MAX_CHART_REGIONS = 10
"""The chart draws the regions with the most loss, at most this many."""
CHART_WIDTH, CHART_HEIGHT = 760, 320
MAP_WIDTH = 760
"""Display width of the map in CSS pixels (the picture keeps its own pixel grid)."""

_STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; }
table { border-collapse: collapse; } th, td { border: 1px solid #bbb; padding: 4px 8px; }
th { background: #eee; } td.number { text-align: right; }
svg { display: block; } #map { max-width: 100%; height: auto; border: 1px solid #888; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; }
"""


@dataclass(frozen=True, slots=True)
class Quicklook:
    """An RGB picture of the scene, ``(rows, cols, 3)`` uint8, and its bounds in ``crs``.

    ``bounds`` is ``(minx, miny, maxx, maxy)`` of the picture's outer edges.
    """

    rgb: NDArray[np.uint8]
    bounds: tuple[float, float, float, float]
    crs: str


@dataclass(frozen=True)
class ReportInputs:
    """Everything a run report shows.

    Attributes
    ----------
    title
        The page title, e.g. the job name.
    facts
        Name/value pairs listed under the title (period, scenes, model, hashes).
    regions
        This run's per-region table (``region_id``, ``forest_loss_ha``, ...).
    polygons
        This run's deforestation polygons.
    quicklook
        The AFTER scene's picture; without it the polygons are drawn on grey.
    timeseries
        Loss per region and period: ``region_id``, ``period_end`` (str), ``forest_loss_ha``.
    """

    title: str
    facts: Mapping[str, str]
    regions: pd.DataFrame
    polygons: gpd.GeoDataFrame
    quicklook: Quicklook | None
    timeseries: pd.DataFrame


def build_report(inputs: ReportInputs) -> str:
    """Render the report page as a string (UTF-8 HTML5, no external resources)."""
    title = html.escape(inputs.title)
    facts = "".join(
        f"<dt>{html.escape(name)}</dt><dd>{html.escape(value)}</dd>"
        for name, value in inputs.facts.items()
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{title}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{title}</h1><dl>{facts}</dl>",
        "<h2>Forest loss polygons</h2>",
        map_svg(inputs.polygons, inputs.quicklook),
        "<h2>Forest loss per region</h2>",
        regions_table(inputs.regions),
        "<h2>Forest loss per period</h2>",
        timeseries_svg(inputs.timeseries),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def png_data_uri(rgb: np.ndarray) -> str:
    """Encode an ``(rows, cols, 3)`` uint8 array as a ``data:image/png;base64`` URI."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB").save(
        buffer, format="PNG", optimize=False
    )
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _rings(geometry: BaseGeometry) -> Iterable[Iterable[tuple[float, float]]]:
    polygons: list[Polygon]
    if isinstance(geometry, Polygon):
        polygons = [geometry]
    elif isinstance(geometry, MultiPolygon):
        polygons = list(geometry.geoms)
    else:
        polygons = [part for part in getattr(geometry, "geoms", []) if isinstance(part, Polygon)]
    for polygon in polygons:
        yield polygon.exterior.coords
        for interior in polygon.interiors:
            yield interior.coords


def map_svg(polygons: gpd.GeoDataFrame, quicklook: Quicklook | None) -> str:
    """The map: quicklook picture with the polygons drawn over it, in the picture's pixels."""
    if quicklook is not None:
        rows, cols = quicklook.rgb.shape[:2]
        minx, miny, maxx, maxy = quicklook.bounds
        if polygons.crs is not None and len(polygons):
            polygons = polygons.to_crs(quicklook.crs)
        background = (
            f'<image id="map-quicklook" x="0" y="0" width="{cols}" height="{rows}" '
            f'preserveAspectRatio="none" href="{png_data_uri(quicklook.rgb)}"/>'
        )
    else:
        if len(polygons):
            minx, miny, maxx, maxy = (float(value) for value in polygons.total_bounds)
        else:
            minx, miny, maxx, maxy = 0.0, 0.0, 1.0, 1.0
        cols = MAP_WIDTH
        rows = max(1, round(cols * (maxy - miny) / max(maxx - minx, 1e-12)))
        background = f'<rect x="0" y="0" width="{cols}" height="{rows}" fill="#d9d9d9"/>'
    scale_x = cols / max(maxx - minx, 1e-12)
    scale_y = rows / max(maxy - miny, 1e-12)
    paths = []
    for geometry in polygons.geometry:
        if geometry is None or geometry.is_empty:
            continue
        commands = []
        for ring in _rings(geometry):
            points = [f"{(x - minx) * scale_x:.2f},{(maxy - y) * scale_y:.2f}" for x, y, *_ in ring]
            commands.append("M" + " L".join(points) + " Z")
        paths.append(f'<path class="loss-polygon" d="{" ".join(commands)}"/>')
    display_height = round(MAP_WIDTH * rows / cols)
    return (
        f'<svg id="map" xmlns="http://www.w3.org/2000/svg" width="{MAP_WIDTH}" '
        f'height="{display_height}" '
        f'viewBox="0 0 {cols} {rows}" role="img" aria-label="forest loss polygons">'
        f"{background}"
        '<g fill="#ff00ff" fill-opacity="0.45" stroke="#ff00ff" stroke-width="1" '
        f'fill-rule="evenodd">{"".join(paths)}</g></svg>'
        f"<p>{len(paths)} forest loss polygon(s), outlined in magenta.</p>"
    )


def _cell(value: object) -> str:
    if isinstance(value, float | np.floating):
        return f'<td class="number">{float(value):,.2f}</td>'
    if isinstance(value, int | np.integer):
        return f'<td class="number">{int(value):,}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def regions_table(regions: pd.DataFrame) -> str:
    """The per-region statistics as an HTML table, regions with the most loss first."""
    ordered = regions.sort_values(
        ["forest_loss_ha", "region_id"], ascending=[False, True], kind="stable"
    )
    header = "".join(f"<th>{html.escape(str(name))}</th>" for name in ordered.columns)
    body = "".join(
        "<tr>" + "".join(_cell(value) for value in row) + "</tr>"
        for row in ordered.itertuples(index=False)
    )
    return (
        f'<table id="regions-table"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'
    )


def _nice_top(value: float) -> float:
    if value <= 0 or not math.isfinite(value):
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def timeseries_svg(timeseries: pd.DataFrame) -> str:
    """A line chart of forest loss (ha) per period for the regions with the most loss."""
    periods = sorted(str(value) for value in timeseries["period_end"].unique())
    totals = (
        timeseries.groupby("region_id")["forest_loss_ha"]
        .sum()
        .reset_index()
        .sort_values(["forest_loss_ha", "region_id"], ascending=[False, True], kind="stable")
    )
    regions = [str(value) for value in totals["region_id"].head(MAX_CHART_REGIONS)]
    left, right, top, bottom = 70, 170, 20, 50
    plot_width = CHART_WIDTH - left - right
    plot_height = CHART_HEIGHT - top - bottom
    y_top = _nice_top(float(timeseries["forest_loss_ha"].max()) if len(timeseries) else 0.0)

    def x_of(index: int) -> float:
        return left + (
            plot_width * index / (len(periods) - 1) if len(periods) > 1 else plot_width / 2
        )

    def y_of(value: float) -> float:
        return top + plot_height * (1 - value / y_top)

    elements = [
        f'<line x1="{left}" y1="{top + plot_height}" x2="{left + plot_width}" '
        f'y2="{top + plot_height}" stroke="#444"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_height}" stroke="#444"/>',
        f'<text x="14" y="{top + plot_height / 2:.1f}" font-size="12" '
        f'transform="rotate(-90 14 {top + plot_height / 2:.1f})" text-anchor="middle">'
        "forest loss (ha)</text>",
    ]
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = y_of(y_top * fraction)
        elements.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_width}" y2="{y:.1f}" '
            'stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{y_top * fraction:,.1f}</text>"
        )
    for index, period in enumerate(periods):
        elements.append(
            f'<text x="{x_of(index):.1f}" y="{top + plot_height + 18}" font-size="11" '
            f'text-anchor="middle">{html.escape(period)}</text>'
        )
    for number, region in enumerate(regions):
        colour = PALETTE[number % len(PALETTE)]
        series = timeseries[timeseries["region_id"].astype(str) == region]
        by_period = dict(
            zip(series["period_end"].astype(str), series["forest_loss_ha"], strict=True)
        )
        points = [
            (x_of(index), y_of(float(by_period.get(period, 0.0))))
            for index, period in enumerate(periods)
        ]
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        elements.append(
            f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{line}"/>'
        )
        elements.extend(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/>' for x, y in points
        )
        legend_y = top + 14 * number + 8
        elements.append(
            f'<rect x="{left + plot_width + 14}" y="{legend_y - 8}" width="10" height="10" '
            f'fill="{colour}"/><text x="{left + plot_width + 30}" y="{legend_y + 1}" '
            f'font-size="11">{html.escape(region)}</text>'
        )
    return (
        f'<svg id="loss-chart" xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" '
        f'height="{CHART_HEIGHT}" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" '
        f'aria-label="forest loss per period">{"".join(elements)}</svg>'
    )
