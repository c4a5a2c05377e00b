"""A self-contained HTML report of one change run: map, flags, per-region table, time series.

The map shows the AFTER scene with the run's loss polygons and the areas
masked at either date (hatched), a legend, a scale bar in ground distance
(:mod:`geoseg.report.mapping`), the background's acquisition date and the
imagery's attribution. The quality flags are listed above the tables.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from PIL import Image
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from geoseg.change.flags import Flag
from geoseg.report.mapping import scale_bar

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
#legend { list-style: none; padding: 0; display: flex; gap: 18px; flex-wrap: wrap; }
#legend svg { display: inline-block; vertical-align: middle; margin-right: 4px; }
#flags li { color: #8a3b00; } .caption { font-size: 13px; color: #444; }
"""
LOSS_COLOUR = "#ff00ff"
MASK_COLOUR = "#4d4d4d"
_HATCH = (
    '<defs><pattern id="masked-hatch" patternUnits="userSpaceOnUse" width="6" height="6" '
    'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff" '
    f'fill-opacity="0.35"/><line x1="0" y1="0" x2="0" y2="6" stroke="{MASK_COLOUR}" '
    'stroke-width="2.5"/></pattern></defs>'
)
LEGEND = (
    '<ul id="legend">'
    f'<li><svg width="18" height="12"><rect width="18" height="12" fill="{LOSS_COLOUR}" '
    f'fill-opacity="0.45" stroke="{LOSS_COLOUR}"/></svg>forest loss (this run)</li>'
    '<li><svg width="18" height="12">'
    + _HATCH
    + f'<rect width="18" height="12" fill="url(#masked-hatch)" stroke="{MASK_COLOUR}"/></svg>'
    "masked or without data at either date (clouds, shadows, nodata): not assessed</li></ul>"
)
"""The map's legend: one entry per kind of thing drawn."""


@dataclass(frozen=True, slots=True)
class Quicklook:
    """An RGB picture of the scene, ``(rows, cols, 3)`` uint8, and its bounds in ``crs``.

    ``bounds`` is ``(minx, miny, maxx, maxy)`` of the picture's outer edges.
    """

    rgb: NDArray[np.uint8]
    bounds: tuple[float, float, float, float]
    crs: str
    acquired: str = ""
    """The scene's acquisition date (or date and time), shown under the map."""
    attribution: str = ""
    """Who made the imagery and under which licence (CC BY-SA sources require it)."""


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
    flags
        The run's quality flags (:mod:`geoseg.change.flags`), run-level first.
    masked
        Areas without a valid class at either date, drawn hatched (None: not known).
    """

    title: str
    facts: Mapping[str, str]
    regions: pd.DataFrame
    polygons: gpd.GeoDataFrame
    quicklook: Quicklook | None
    timeseries: pd.DataFrame
    flags: Sequence[Flag] = ()
    masked: gpd.GeoDataFrame | None = field(default=None)


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
        map_svg(inputs.polygons, inputs.quicklook, inputs.masked),
        LEGEND,
        map_caption(inputs.quicklook),
        "<h2>Quality flags</h2>",
        flags_list(inputs.flags),
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


def _path(geometry: BaseGeometry, minx: float, maxy: float, scale_x: float, scale_y: float) -> str:
    commands = []
    for ring in _rings(geometry):
        points = [f"{(x - minx) * scale_x:.2f},{(maxy - y) * scale_y:.2f}" for x, y, *_ in ring]
        commands.append("M" + " L".join(points) + " Z")
    return " ".join(commands)


def map_svg(
    polygons: gpd.GeoDataFrame,
    quicklook: Quicklook | None,
    masked: gpd.GeoDataFrame | None = None,
) -> str:
    """The map: quicklook, masked areas hatched, loss polygons, scale bar; in picture pixels."""
    masked = masked if masked is not None else gpd.GeoDataFrame(geometry=[])
    crs = polygons.crs
    if quicklook is not None:
        rows, cols = quicklook.rgb.shape[:2]
        minx, miny, maxx, maxy = quicklook.bounds
        crs = quicklook.crs
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
    if crs is not None:
        polygons = polygons.to_crs(crs) if polygons.crs is not None and len(polygons) else polygons
        masked = masked.to_crs(crs) if masked.crs is not None and len(masked) else masked
    scale_x = cols / max(maxx - minx, 1e-12)
    scale_y = rows / max(maxy - miny, 1e-12)
    drawn = {
        name: [
            _path(geometry, minx, maxy, scale_x, scale_y)
            for geometry in frame.geometry
            if geometry is not None and not geometry.is_empty
        ]
        for name, frame in (("loss", polygons), ("masked", masked))
    }
    masked_paths = "".join(f'<path class="masked-area" d="{d}"/>' for d in drawn["masked"])
    loss_paths = "".join(f'<path class="loss-polygon" d="{d}"/>' for d in drawn["loss"])
    display_height = round(MAP_WIDTH * rows / cols)
    bar = _scale_bar_svg((minx, miny, maxx, maxy), str(crs), cols, rows) if crs else ""
    return (
        f'<svg id="map" xmlns="http://www.w3.org/2000/svg" width="{MAP_WIDTH}" '
        f'height="{display_height}" '
        f'viewBox="0 0 {cols} {rows}" role="img" aria-label="forest loss polygons">'
        f"{_HATCH}{background}"
        f'<g fill="url(#masked-hatch)" stroke="{MASK_COLOUR}" stroke-width="0.5" '
        f'fill-rule="evenodd">{masked_paths}</g>'
        f'<g fill="{LOSS_COLOUR}" fill-opacity="0.45" stroke="{LOSS_COLOUR}" stroke-width="1" '
        f'fill-rule="evenodd">{loss_paths}</g>{bar}</svg>'
        f"<p>{len(drawn['loss'])} forest loss polygon(s), outlined in magenta; "
        f"{len(drawn['masked'])} masked area(s), hatched.</p>"
    )


def _scale_bar_svg(
    bounds: tuple[float, float, float, float], crs: str, cols: int, rows: int
) -> str:
    """A scale bar in the map's lower left corner (in picture pixels)."""
    try:
        bar = scale_bar(bounds, crs, cols)
    except ValueError:
        return ""  # an engineering CRS without an ellipsoid: no ground scale to draw
    unit = cols / MAP_WIDTH  # one CSS pixel of the displayed map, in picture pixels
    x, y = 10 * unit, rows - 12 * unit
    return (
        f'<g id="scale-bar" data-length-m="{bar.length_m:g}" data-pixels="{bar.pixels:.3f}">'
        f'<rect x="{x - 4 * unit:.2f}" y="{y - 16 * unit:.2f}" width="{bar.pixels + 8 * unit:.2f}" '
        f'height="{22 * unit:.2f}" fill="#ffffff" fill-opacity="0.75"/>'
        f'<path d="M{x:.2f},{y - 5 * unit:.2f} V{y:.2f} H{x + bar.pixels:.2f} '
        f'V{y - 5 * unit:.2f}" fill="none" stroke="#000" stroke-width="{1.5 * unit:.2f}"/>'
        f'<text x="{x + bar.pixels / 2:.2f}" y="{y - 6 * unit:.2f}" font-size="{11 * unit:.2f}" '
        f'text-anchor="middle">{html.escape(bar.label)}</text></g>'
    )


def map_caption(quicklook: Quicklook | None) -> str:
    """The background's date and the imagery's attribution, under the map."""
    if quicklook is None:
        return '<p class="caption" id="map-caption">No background image.</p>'
    parts = [
        "Background: the AFTER scene"
        + (f", acquired {html.escape(quicklook.acquired)}" if quicklook.acquired else "")
        + " (true colour, stretched)."
    ]
    if quicklook.attribution:
        parts.append(f'<span id="attribution">Imagery: {html.escape(quicklook.attribution)}</span>')
    return f'<p class="caption" id="map-caption">{" ".join(parts)}</p>'


def flags_list(flags: Sequence[Flag]) -> str:
    """The quality flags, one item each (``where: message``), or a line saying there is none."""
    if not flags:
        return '<p id="flags">No quality flag: nothing marks this comparison as doubtful.</p>'
    items = "".join(
        f'<li data-code="{html.escape(flag.code)}"><b>{html.escape(flag.where)}</b>: '
        f"{html.escape(flag.message)}</li>"
        for flag in flags
    )
    return f'<ul id="flags">{items}</ul>'


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
