"""The STAC Item that describes a command's outputs (pure: a dict, no file).

``geoseg predict``, ``vectorize``, ``change``, ``run`` and ``run-change``
write one Item per invocation beside their primary output, named after it:
``labels.tif`` -> ``labels.tif.stac.json`` (:func:`item_path`). Its assets
are every file the command wrote (hrefs relative to the Item, which sits in
the same folder), with their media types and roles. The Item holds:

- ``geometry`` and ``bbox``: the output grid's outline in EPSG:4326
  (densified, so a projected grid's curved edges are followed; split in two across the
  antimeridian);
- ``datetime``: the input scene's acquisition time, or ``start_datetime`` /
  ``end_datetime`` for a time range (two dates, a mosaic); when no input
  date is known, the processing time;
- the projection extension (``proj:code`` or ``proj:wkt2``, ``proj:shape``,
  ``proj:transform`` of the grid);
- the classification extension (``classification:classes``: value, name,
  title and ``color_hint`` from the model card or the class-raster contract
  of :mod:`geoseg.labels`);
- the processing extension (``processing:software`` with the geoseg
  version, ``processing:datetime``, ``processing:lineage`` naming the inputs
  and the model).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoseg.grid import RasterGrid
from geoseg.labels import Colour, stac_class_name

if TYPE_CHECKING:
    from pystac.extensions.classification import Classification

    from geoseg.models.card import ModelCard

ITEM_SUFFIX = ".stac.json"
"""Appended to the primary output's file name to name its Item."""
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
"""The processing extension's schema (pystac has no class for it)."""
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
MEDIA_TYPES = {
    ".tif": COG_MEDIA_TYPE,
    ".tiff": COG_MEDIA_TYPE,
    ".gpkg": "application/geopackage+sqlite3",
    ".parquet": "application/vnd.apache.parquet",
    ".csv": "text/csv",
    ".png": "image/png",
    ".json": "application/json",
    ".html": "text/html",
}
"""Media type of each output file suffix (geoseg writes every GeoTIFF as a COG)."""
_EDGE_POINTS = 32


@dataclass(frozen=True)
class OutputAsset:
    """One output file of the Item: its path, roles and a title."""

    path: Path
    roles: tuple[str, ...] = ("data",)
    title: str = ""


@dataclass(frozen=True)
class OutputClass:
    """One class of the outputs: the label value, its name and colour."""

    value: int
    name: str
    colour: Colour | None = None


def card_classes(card: ModelCard) -> list[OutputClass]:
    """The classes of a model card, with their colours."""
    return [OutputClass(spec.id, spec.name, spec.rgb) for spec in card.classes]


def stac_classes(classes: Sequence[OutputClass]) -> list[Classification]:
    """The classes as the STAC classification extension lists them (colour as ``RRGGBB``)."""
    from pystac.extensions.classification import Classification

    return [
        Classification.create(
            value=spec.value,
            name=stac_class_name(spec.name, spec.value),
            title=spec.name,
            description=spec.name,
            color_hint=None
            if spec.colour is None
            else "".join(f"{part:02X}" for part in spec.colour),
        )
        for spec in classes
    ]


def item_path(primary: str | Path) -> Path:
    """Where the Item of the output ``primary`` goes: beside it, ``<name>.stac.json``."""
    primary = Path(primary)
    return primary.with_name(primary.name + ITEM_SUFFIX)


def media_type(path: str | Path) -> str:
    """The media type of an output file, by its suffix (``application/octet-stream`` else)."""
    return MEDIA_TYPES.get(Path(path).suffix.lower(), "application/octet-stream")


def footprint(grid: RasterGrid) -> tuple[dict[str, Any], list[float]]:
    """The grid's outline in EPSG:4326 (lon/lat) as GeoJSON, and its bbox.

    odc-geo densifies the edges (a projected grid's edges are curves in
    lon/lat) and splits an outline across the antimeridian into a
    MultiPolygon of its two sides; the rings run counter-clockwise and such
    a bbox has west > east, as RFC 7946 says.
    """
    import shapely
    from odc.geo.geobox import GeoBox
    from shapely.geometry import mapping
    from shapely.geometry.polygon import orient

    box = GeoBox((grid.height, grid.width), grid.transform, grid.crs.to_wkt())
    outline = box.footprint("EPSG:4326", npoints=_EDGE_POINTS, wrapdateline=True).geom
    outline = shapely.set_precision(outline, 1e-9)
    if isinstance(outline, shapely.Polygon):
        outline = orient(outline, 1.0)
        return mapping(outline), [float(value) for value in outline.bounds]
    parts = sorted((orient(part, 1.0) for part in outline.geoms), key=lambda p: p.centroid.x)
    west, east = parts[-1], parts[0]  # the western side ends at +180, the eastern starts at -180
    bbox = [west.bounds[0], min(p.bounds[1] for p in parts)]
    bbox += [east.bounds[2], max(p.bounds[3] for p in parts)]
    return mapping(shapely.MultiPolygon(parts)), [float(value) for value in bbox]


def _timestamp(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def output_item(
    item_id: str,
    folder: Path,
    *,
    grid: RasterGrid,
    assets: Mapping[str, OutputAsset],
    processed: datetime,
    lineage: str,
    start: datetime | None = None,
    end: datetime | None = None,
    classes: Sequence[OutputClass] = (),
    version: str | None = None,
) -> dict[str, Any]:
    """The STAC Item (as a dict) describing outputs on ``grid``.

    Parameters
    ----------
    item_id
        The Item's id (the primary output's file name).
    folder
        Where the Item is written: asset hrefs are relative to it.
    grid
        The outputs' pixel grid (for vector outputs, the class map's).
    assets
        The output files by asset key.
    processed
        When the outputs were made (``processing:datetime``).
    lineage
        ``processing:lineage``: the inputs and the model, in words.
    start, end
        Acquisition time of the input (``start`` alone, or both equal) or
        the time range of the inputs; neither: the processing time.
    classes
        ``classification:classes`` (none: no classification extension).
    version
        The geoseg version (default: the installed one).
    """
    import pystac
    from pystac.extensions.classification import ClassificationExtension
    from pystac.extensions.projection import ProjectionExtension

    if version is None:
        from geoseg import __version__ as version
    outline, bbox = footprint(grid)
    moment: datetime | None = _timestamp(processed)
    start_datetime = end_datetime = None
    if start is not None and (end is None or end == start):
        moment = _timestamp(start)
    elif start is not None and end is not None:
        moment, start_datetime, end_datetime = None, _timestamp(start), _timestamp(end)
    item = pystac.Item(
        id=item_id,
        geometry=outline,
        bbox=bbox,
        datetime=moment,
        start_datetime=start_datetime,
        end_datetime=end_datetime,
        properties={},
    )
    projection = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = grid.crs.to_epsg()
    projection.apply(
        code=None if epsg is None else f"EPSG:{epsg}",
        wkt2=grid.crs.to_wkt() if epsg is None else None,
        shape=[grid.height, grid.width],
        transform=[float(value) for value in tuple(grid.transform)[:6]],
    )
    if classes:
        ClassificationExtension.ext(item, add_if_missing=True).apply(classes=stac_classes(classes))
    item.stac_extensions.append(PROCESSING_SCHEMA)
    item.properties.update(
        {
            "processing:software": {"geoseg": version},
            "processing:datetime": _timestamp(processed).isoformat().replace("+00:00", "Z"),
            "processing:lineage": lineage,
        }
    )
    for key, asset in assets.items():
        item.add_asset(
            key,
            pystac.Asset(
                href=Path(os.path.relpath(Path(asset.path).resolve(), folder.resolve())).as_posix(),
                media_type=media_type(asset.path),
                roles=list(asset.roles),
                title=asset.title or None,
            ),
        )
    data: dict[str, Any] = item.to_dict(include_self_link=False, transform_hrefs=False)
    return data
