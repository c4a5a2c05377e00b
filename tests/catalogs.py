"""Static STAC catalogs of scene items for tests (what ``geoseg run`` searches)."""

from __future__ import annotations

from pathlib import Path

import pystac

from data_catalog.build import HREF_BASE


def save_scene_catalog(items: list[pystac.Item], location: Path, catalog_id: str) -> Path:
    """Save ``items`` as the ``landsat`` scene collection of a catalog in ``location``.

    The collection ``geoseg run`` searches is ``landsat`` whatever the sensor;
    hrefs are relative to the data directory, as in the embedded catalog.
    Returns the ``catalog.json``.
    """
    catalog = pystac.Catalog(
        id=catalog_id, description="test", extra_fields={"geoseg:href_base": HREF_BASE}
    )
    collection = pystac.Collection(
        id="landsat",
        description="test scenes",
        extent=pystac.Extent(
            pystac.SpatialExtent([list(items[0].bbox or [])]),
            pystac.TemporalExtent([[None, None]]),
        ),
    )
    collection.add_items(items)
    catalog.add_child(collection)
    catalog.normalize_hrefs(str(location))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return location / "catalog.json"
