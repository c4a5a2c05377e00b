"""``geoseg catalog list`` and ``geoseg catalog search``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from geoseg.catalog.stac import SceneEntry

_CATALOG_HELP = "static catalog (catalog.json or its folder) or STAC API URL; default: embedded"
_COLUMNS = ("id", "collection", "datetime", "bands", "crs", "shape", "bbox")


def _print(entries: list[SceneEntry], as_json: bool) -> None:
    from geoseg.catalog.stac import describe

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
@click.option("--collection", default=None, help="only this collection [default: all]")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def list_entries(location: str | None, collection: str | None, as_json: bool) -> None:
    """List every item of the catalog (scenes, reference maps, regions)."""
    from geoseg.catalog.stac import is_api_url, open_catalog
    from geoseg.io.stac import list_stac_api_collections

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
@click.option(
    "--datetime", "datetime_range", default=None, help="DATE or START/END [default: any time]"
)
@click.option(
    "--collection", default=None, help="collection to search [default: the imagery collection]"
)
@click.option("--catalog", "location", default=None, help=_CATALOG_HELP)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def search_entries(
    bbox: str,
    bbox_crs: str,
    datetime_range: str | None,
    collection: str | None,
    location: str | None,
    as_json: bool,
) -> None:
    """Items overlapping a bbox (any CRS) within a date range."""
    from geoseg.bbox import make_bbox, parse_bbox_text
    from geoseg.catalog.stac import IMAGERY, search

    area = make_bbox(parse_bbox_text(bbox), bbox_crs)
    found = search(area, datetime_range, location=location, collection=collection or IMAGERY)
    _print(found, as_json)
