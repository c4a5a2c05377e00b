"""``geoseg catalog list`` and ``geoseg catalog search``."""

from __future__ import annotations

import json

import click

from geoseg.bbox import make_bbox, parse_bbox_text
from geoseg.catalog.stac import (
    IMAGERY,
    SceneEntry,
    describe,
    is_api_url,
    open_catalog,
    search,
)
from geoseg.io.stac import list_stac_api_collections

_CATALOG_HELP = "static catalog (catalog.json or its folder) or STAC API URL; default: embedded"
_COLUMNS = ("id", "collection", "datetime", "bands", "crs", "shape", "bbox")


def _print(entries: list[SceneEntry], as_json: bool) -> None:
    rows = [describe(entry) for entry in entries]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    widths = {name: max([len(name), *(len(row[name]) for row in rows)]) for name in _COLUMNS}
    click.echo("  ".join(name.ljust(widths[name]) for name in _COLUMNS).rstrip())
    for row in rows:
        click.echo("  ".join(row[name].ljust(widths[name]) for name in _COLUMNS).rstrip())


@click.group()
def catalog() -> None:
    """List and search the scene catalog (embedded STAC catalog by default)."""


@catalog.command("list")
@click.option("--catalog", "location", default=None, help=_CATALOG_HELP)
@click.option("--collection", default=None, help="only this collection")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def list_entries(location: str | None, collection: str | None, as_json: bool) -> None:
    """List every item of the catalog (scenes, reference maps, regions)."""
    if is_api_url(location):
        for name in list_stac_api_collections(str(location)):
            click.echo(name)
        return
    index = open_catalog(location)
    names = [collection] if collection else sorted({entry.collection for entry in index.entries})
    _print([entry for name in names for entry in index.collection(name)], as_json)


@catalog.command("search")
@click.option("--bbox", required=True, help="MINX,MINY,MAXX,MAXY (in --bbox-crs)")
@click.option("--bbox-crs", default="EPSG:4326", show_default=True, help="CRS of --bbox")
@click.option("--datetime", "datetime_range", default=None, help="DATE or START/END")
@click.option("--collection", default=IMAGERY, show_default=True, help="collection to search")
@click.option("--catalog", "location", default=None, help=_CATALOG_HELP)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def search_entries(
    bbox: str,
    bbox_crs: str,
    datetime_range: str | None,
    collection: str,
    location: str | None,
    as_json: bool,
) -> None:
    """Items overlapping a bbox (any CRS) within a date range."""
    area = make_bbox(parse_bbox_text(bbox), bbox_crs)
    _print(search(area, datetime_range, location=location, collection=collection), as_json)
