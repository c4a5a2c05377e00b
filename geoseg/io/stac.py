"""STAC files: reading a static catalog (pystac) or a STAC API (pystac-client); writing Items.

Both return plain item dictionaries with their asset hrefs exactly as stored,
plus the id of the collection each item belongs to; :mod:`geoseg.catalog.stac`
turns them into scene entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoseg.errors import CatalogError, OutputError

if TYPE_CHECKING:
    from geoseg.models.card import ModelCard
    from geoseg.report.stac import OutputAsset


def catalog_file(location: str | Path) -> Path:
    """The ``catalog.json`` of a static catalog given as the file or its folder."""
    path = Path(location)
    if path.is_dir():
        path = path / "catalog.json"
    if not path.is_file():
        raise CatalogError(
            f"{location}: no STAC catalog there (expected catalog.json); give a catalog.json, "
            "its folder, or an http(s) STAC API URL"
        )
    return path


def read_static_catalog(location: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The root catalog's fields and all its items (recursively), hrefs untouched.

    Returns
    -------
    tuple
        ``(catalog fields, items)``; each item dict gets the key ``collection``
        set to the id of the collection holding it.
    """
    import pystac

    path = catalog_file(location)
    try:
        catalog = pystac.Catalog.from_file(str(path))
        items = []
        for item in catalog.get_items(recursive=True):
            data = item.to_dict(include_self_link=False, transform_hrefs=False)
            data["collection"] = item.collection_id or ""
            items.append(data)
    except (pystac.STACError, OSError, ValueError, KeyError) as error:
        raise CatalogError(f"{path}: not a readable STAC catalog ({error})") from None
    fields = catalog.to_dict(include_self_link=False, transform_hrefs=False)
    return fields, items


def search_stac_api(
    url: str,
    *,
    bboxes: Sequence[tuple[float, float, float, float]],
    datetime: str | None,
    collections: Sequence[str] | None,
    max_items: int = 500,
) -> list[dict[str, Any]]:
    """Items of a STAC API matching any of ``bboxes`` (lon/lat) and ``datetime``."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    try:
        client = Client.open(url)
        found: dict[str, dict[str, Any]] = {}
        for bbox in bboxes:
            search = client.search(
                bbox=list(bbox),
                datetime=datetime,
                collections=list(collections) if collections else None,
                max_items=max_items,
            )
            for item in search.items():
                found[item.id] = item.to_dict(include_self_link=False, transform_hrefs=False)
                found[item.id]["collection"] = item.collection_id or ""
    except (APIError, OSError, ValueError) as error:
        raise CatalogError(f"{url}: STAC API search failed ({error})") from None
    return list(found.values())


def list_stac_api_collections(url: str) -> list[str]:
    """Ids of the collections a STAC API offers."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    try:
        return sorted(collection.id for collection in Client.open(url).get_collections())
    except (APIError, OSError, ValueError) as error:
        raise CatalogError(f"{url}: cannot list the STAC API's collections ({error})") from None


def write_item(path: str | Path, item: dict[str, Any]) -> Path:
    """Write a STAC Item dict as JSON at ``path``, atomically (after the files it describes)."""
    from geoseg.io.staging import write_json

    return write_json(path, item)


def write_output_item(
    primary: str | Path, assets: Mapping[str, OutputAsset], **fields: Any
) -> Path:
    """Write the Item describing a command's outputs beside ``primary`` (its first asset).

    ``fields`` are those of :func:`geoseg.report.stac.output_item` after
    ``assets``; the Item's id is ``primary``'s file name and it is written at
    :func:`geoseg.report.stac.item_path` once every output exists.

    Returns
    -------
    Path
        The Item's path.
    """
    from geoseg.report.stac import item_path, output_item

    primary = Path(primary)
    missing = [str(asset.path) for asset in assets.values() if not Path(asset.path).is_file()]
    if missing:
        raise OutputError(f"{primary}: no STAC Item for outputs that do not exist: {missing}")
    path = item_path(primary)
    return write_item(path, output_item(primary.name, path.parent, assets=assets, **fields))


def write_model_item(
    directory: Path, card: ModelCard, out: Path, *, total_parameters: int, framework_version: str
) -> Path:
    """Export a model directory as a STAC MLM Item into the folder ``out``.

    ``out`` receives ``<name>.safetensors`` (the weights, checked against the
    card by the caller), ``<name>.card.json`` and, written last, the Item
    ``<name>.stac.json`` (:func:`geoseg.models.stac_mlm.mlm_item`) whose
    assets point at them by relative hrefs; each file appears atomically.
    ``out`` is created when missing.

    Returns
    -------
    Path
        The Item's path.
    """
    from geoseg.io.staging import publish_file
    from geoseg.models.card import CARD_FILENAME
    from geoseg.models.stac_mlm import mlm_item

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{out}: cannot create the export folder ({error})") from None
    weights = publish_file(directory / card.weights_file, out / f"{card.name}.safetensors")
    card_copy = publish_file(directory / CARD_FILENAME, out / f"{card.name}.card.json")
    item = mlm_item(
        card,
        weights_href=weights.name,
        card_href=card_copy.name,
        total_parameters=total_parameters,
        framework_version=framework_version,
    )
    return write_item(out / f"{card.name}.stac.json", item)
