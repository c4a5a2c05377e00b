"""Catalog items as xarray loaders want them: ``odc.stac.load`` and ``stackstac.stack``.

The embedded catalog describes each scene as one multi-band ``data`` asset
whose href is relative to the data directory. :func:`stac_item` hands back
the item as a ``pystac.Item`` those loaders read directly: files verified
against their SHA-256, absolute hrefs, and one single-band asset per band,
keyed by its common name (``blue``, ``nir``...) and pointing at the band
through GDAL's ``vrt://`` syntax (stackstac reads single-band assets only;
odc-stac then names its variables by common name, as model cards name bands),
with ``proj:bbox`` and ``proj:epsg`` (stackstac 0.5 reads the grid from these).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoseg.catalog.stac import EMBEDDED, entry_from_item, is_api_url, verify_entry
from geoseg.errors import CatalogError
from geoseg.io.stac import read_static_catalog

if TYPE_CHECKING:
    import pystac


def band_assets(asset: dict[str, Any], path: str) -> dict[str, dict[str, Any]]:
    """One asset per band of a multi-band ``asset`` stored at ``path``, by common name."""
    bands = asset.get("eo:bands") or [{} for _ in asset.get("raster:bands", [])]
    rasters = asset.get("raster:bands") or [{} for _ in bands]
    assets = {}
    for index, (band, raster) in enumerate(zip(bands, rasters, strict=True), start=1):
        key = band.get("common_name") or band.get("name") or f"band{index}"
        assets[key] = {
            "href": f"vrt://{path}?bands={index}",
            "type": "image/tiff; application=geotiff",
            "title": band.get("description", key),
            "eo:bands": [band],
            "raster:bands": [raster],
            "roles": ["data"],
        }
    return assets


def stac_item(item_id: str, *, location: str | Path | None = None) -> pystac.Item:
    """A scene of a static catalog as a ``pystac.Item`` for ``odc.stac`` or ``stackstac``.

    Parameters
    ----------
    item_id
        The item's id (``geoseg catalog list`` shows them), e.g.
        ``"zion-landsat8-20150818"``.
    location
        A static catalog (``catalog.json`` or its folder); default the
        embedded one.

    Returns
    -------
    pystac.Item
        The item with its files checked against their SHA-256, and one
        single-band asset per band keyed by common name, with an absolute
        href: ``odc.stac.load([item], bands=["red", "nir"])`` and
        ``stackstac.stack([item], assets=["red", "nir"], snap_bounds=False)``
        load them (without ``snap_bounds=False`` stackstac moves the grid to
        multiples of the pixel size, a shift of half a pixel for Landsat).

    Raises
    ------
    CatalogError
        No such item (the message lists the ids), a missing file, or a STAC
        API address (search it with ``pystac_client`` instead).
    ChecksumError
        A file does not match its recorded SHA-256.
    """
    import pystac

    if is_api_url(location):
        raise CatalogError(
            f"{location}: stac_item reads static catalogs; a STAC API's items already have "
            "absolute hrefs (search it with pystac_client)"
        )
    root = str(Path(location or EMBEDDED).resolve())
    _, items = read_static_catalog(root)
    found = [item for item in items if item.get("id") == item_id]
    if not found:
        ids = ", ".join(sorted(str(item.get("id")) for item in items))
        raise CatalogError(f"{root}: no item {item_id!r}; items: {ids}")
    item = copy.deepcopy(found[0])
    path = verify_entry(entry_from_item(item))  # the data asset's file, checked
    assets = item["assets"]
    data_key = "data" if "data" in assets else sorted(assets)[0]
    item["assets"] = band_assets(assets[data_key], path)
    item["links"] = []
    grid = entry_from_item(item).grid
    if grid is not None:  # stackstac computes its grid from proj:bbox and proj:shape
        item["properties"]["proj:bbox"] = list(grid.bounds)
    loaded = pystac.Item.from_dict(item)
    code = str(item["properties"].get("proj:code", ""))
    if code.upper().startswith("EPSG:"):
        # stackstac 0.5 reads the CRS from proj:epsg only, which pystac drops when it
        # reads an item of the projection extension 2.x: set after reading
        loaded.properties["proj:epsg"] = int(code.split(":")[1])
    return loaded
