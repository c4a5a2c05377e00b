"""(Re)generate the embedded static STAC catalog from the sample data's own metadata.

Run ``python -m data_catalog.build`` after the data directory changes. Grids,
CRSs, footprints, nodata values and SHA-256 checksums are read from the files;
what the files cannot say (acquisition dates, band common names, physical
scale and units) is declared in the tables below, from ``SOURCES.md``.

Asset hrefs are stored relative to the *data directory* (``GEOSEG_DATA_DIR``
or ``../shared/data``), not to the JSON files, so the catalog stays valid
wherever the data lives: :mod:`geoseg.catalog.stac` resolves them against
:func:`geoseg.catalog.datadir.data_dir` (the catalog's ``geoseg:href_base`` field says
so).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyogrio
import pystac
import shapely
from rasterio.crs import CRS
from rasterio.warp import transform_bounds, transform_geom
from shapely.geometry import box, mapping

from data_catalog import CATALOG_DIR
from geoseg.catalog.datadir import data_dir
from geoseg.io.checksums import sha256_file
from geoseg.io.raster import read_info
from geoseg.quality import CLASSIFICATION_EXTENSION, SATURATION_FIELD, Convention, stac_fields

HREF_BASE = "data_dir"
EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
]


@dataclass(frozen=True)
class Band:
    """One band: its name, common name (or None), scale, offset and units.

    ``quality`` marks the scene's quality band and its convention
    (:mod:`geoseg.quality`); ``saturation`` is the raw value the band holds where
    the sensor saturated (those pixels are masked).
    """

    name: str
    common_name: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    description: str = ""
    quality: Convention | None = None
    saturation: float | None = None


@dataclass(frozen=True)
class RasterEntry:
    """A raster item: scene or reference map."""

    id: str
    collection: str
    href: str
    title: str
    bands: list[Band]
    datetime: str | None
    start: str | None = None
    end: str | None = None
    nodata: float | None = None
    extra_assets: list[str] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RegionEntry:
    """A vector item of regions (outlines to search or report by)."""

    id: str
    href: str
    title: str
    id_field: str
    sidecars: tuple[str, ...] = ()


CHIAPAS_ATTRIBUTION = (
    "Landsat-7 ETM+ surface reflectance stack from open-geo-tutorial (C. Holden), CC BY-SA 3.0; "
    "Landsat imagery courtesy of the U.S. Geological Survey (public domain)"
)
"""The attribution the CC BY-SA source requires (see the data directory's SOURCES.md)."""
ZION_ATTRIBUTION = (
    "Landsat-8 OLI scene from the R package spDataLarge (J. Nowosad), CC0; "
    "Landsat imagery courtesy of the U.S. Geological Survey (public domain)"
)
LANDSAT8_DN = "digital numbers (Level-1, uint16)"
SR = "reflectance"

# LEDAPS surface reflectance: saturated pixels hold 16000 (the 2002 stack has 228-1,184 per
# reflective band, every one of them in Fmask cloud, code 4). Band 8 holds Fmask class codes:
# checked against the imagery (docs/benchmarks.md, issue 20): 4 cloud, 2 shadow, 0 clear land.
_LEDAPS_SATURATION = 16000
_CHIAPAS_BANDS = [
    Band("B1", "blue", 1e-4, 0.0, SR, "band 1 reflectance", saturation=_LEDAPS_SATURATION),
    Band("B2", "green", 1e-4, 0.0, SR, "band 2 reflectance", saturation=_LEDAPS_SATURATION),
    Band("B3", "red", 1e-4, 0.0, SR, "band 3 reflectance", saturation=_LEDAPS_SATURATION),
    Band("B4", "nir", 1e-4, 0.0, SR, "band 4 reflectance", saturation=_LEDAPS_SATURATION),
    Band("B5", "swir16", 1e-4, 0.0, SR, "band 5 reflectance", saturation=_LEDAPS_SATURATION),
    Band("B7", "swir22", 1e-4, 0.0, SR, "band 7 reflectance", saturation=_LEDAPS_SATURATION),
    Band("B6", "lwir", 0.01, 0.0, "degC", "band 6 brightness temperature (LEDAPS: degC x 100)"),
    Band("QA", None, 1.0, 0.0, "", "band 8 Fmask class codes", quality=Convention.FMASK),
]

SCENES = [
    RasterEntry(
        id="zion-landsat8-20150818",
        collection="landsat",
        href="zion/zion_landsat8_20150818_b2345.tif",
        title="Landsat-8 OLI LC80380342015230LGN00 over Zion NP, bands 2-5",
        bands=[
            Band("B2", "blue", unit=LANDSAT8_DN, description="B2 blue"),
            Band("B3", "green", unit=LANDSAT8_DN, description="B3 green"),
            Band("B4", "red", unit=LANDSAT8_DN, description="B4 red"),
            Band("B5", "nir", unit=LANDSAT8_DN, description="B5 near infrared"),
        ],
        datetime="2015-08-18T18:00:00Z",
        nodata=65535,
        properties={
            "platform": "landsat-8",
            "instruments": ["oli"],
            "geoseg:units": "DN",
            "license": "CC0-1.0",
            "geoseg:attribution": ZION_ATTRIBUTION,
        },
    ),
    RasterEntry(
        id="chiapas-landsat7-19991118",
        collection="landsat",
        href="chiapas_twodate/LE70220491999322EDC01_stack.gtif",
        title="Landsat-7 ETM+ surface reflectance stack, Chiapas, 1999-11-18",
        bands=_CHIAPAS_BANDS,
        datetime="1999-11-18T16:00:00Z",
        nodata=-9999,
        extra_assets=["chiapas_twodate/LE70220491999322EDC01_stack.gtif.aux.xml"],
        properties={
            "platform": "landsat-7",
            "instruments": ["etm+"],
            "geoseg:units": "SR x 10000",
            "license": "CC-BY-SA-3.0",
            "geoseg:attribution": CHIAPAS_ATTRIBUTION,
        },
    ),
    RasterEntry(
        id="chiapas-landsat7-20020416",
        collection="landsat",
        href="chiapas_twodate/LE70220492002106EDC00_stack.gtif",
        title="Landsat-7 ETM+ surface reflectance stack, Chiapas, 2002-04-16",
        bands=_CHIAPAS_BANDS,
        datetime="2002-04-16T16:00:00Z",
        nodata=-9999,
        properties={
            "platform": "landsat-7",
            "instruments": ["etm+"],
            "geoseg:units": "SR x 10000",
            "license": "CC-BY-SA-3.0",
            "geoseg:attribution": CHIAPAS_ATTRIBUTION,
        },
    ),
]

_LABEL = [Band("labels", None, unit="class code")]

REFERENCE_MAPS = [
    RasterEntry(
        id="zion-nlcd2011",
        collection="reference-maps",
        href="zion/nlcd2011_on_landsat_grid.tif",
        title="NLCD 2011 land cover (full codes) on the Zion Landsat grid",
        bands=_LABEL,
        datetime="2011-07-01T00:00:00Z",
        properties={"geoseg:labels": "nlcd"},
    ),
    RasterEntry(
        id="zion-nlcd2011-generalized",
        collection="reference-maps",
        href="zion/nlcd_generalized_on_landsat_grid.tif",
        title="NLCD 2011 generalized to 8 classes on the Zion Landsat grid",
        bands=_LABEL,
        datetime="2011-07-01T00:00:00Z",
        properties={
            "geoseg:labels": "nlcd-generalized",
            "geoseg:classes": {
                "1": "water",
                "2": "developed",
                "3": "barren",
                "4": "forest",
                "5": "shrubland",
                "6": "herbaceous",
                "7": "cultivated",
                "8": "wetlands",
            },
        },
    ),
    RasterEntry(
        id="guadeloupe-forest-t1",
        collection="reference-maps",
        href="guadeloupe_forest/forest_t1.tif",
        title="Guadeloupe forest / non-forest, about 2000",
        bands=_LABEL,
        datetime="2000-01-01T00:00:00Z",
        properties={
            "geoseg:labels": "forest",
            "geoseg:classes": {"0": "non-forest", "1": "forest"},
        },
    ),
    RasterEntry(
        id="guadeloupe-forest-t3",
        collection="reference-maps",
        href="guadeloupe_forest/forest_t3.tif",
        title="Guadeloupe forest / non-forest, about 2020",
        bands=_LABEL,
        datetime="2020-01-01T00:00:00Z",
        properties={
            "geoseg:labels": "forest",
            "geoseg:classes": {"0": "non-forest", "1": "forest"},
        },
    ),
    RasterEntry(
        id="guadeloupe-fcc123",
        collection="reference-maps",
        href="guadeloupe_forest/fcc123.tif",
        title="Guadeloupe forest cover change t1-t2-t3",
        bands=_LABEL,
        datetime=None,
        start="2000-01-01T00:00:00Z",
        end="2020-01-01T00:00:00Z",
        properties={
            "geoseg:labels": "forest-cover-change",
            "geoseg:classes": {
                "0": "other",
                "1": "loss t1-t2",
                "2": "loss t2-t3",
                "3": "forest remaining",
            },
        },
    ),
    RasterEntry(
        id="rondonia-prodes",
        collection="reference-maps",
        href="rondonia_prodes/PRODES_LANDSAT_AMZ_2000-08-01_2020-07-31_class_v20220606.tif",
        title="PRODES deforestation map, Rondonia (INPE)",
        bands=_LABEL,
        datetime=None,
        start="2000-08-01T00:00:00Z",
        end="2021-07-31T00:00:00Z",
        properties={"geoseg:labels": "prodes"},
    ),
    RasterEntry(
        id="neiba-hansen-treecover2000",
        collection="reference-maps",
        href="neiba_hansen/Hansen_GFC-2023-v1.11_treecover2000_20N_080W.tif",
        title="Hansen GFC v1.11 tree cover 2000 (%), Sierra de Neiba",
        bands=[Band("treecover2000", None, unit="percent")],
        datetime="2000-01-01T00:00:00Z",
        properties={"geoseg:labels": "hansen-treecover30"},
    ),
    RasterEntry(
        id="neiba-hansen-lossyear",
        collection="reference-maps",
        href="neiba_hansen/Hansen_GFC-2023-v1.11_lossyear_20N_080W.tif",
        title="Hansen GFC v1.11 year of forest loss, Sierra de Neiba",
        bands=[Band("lossyear", None, unit="years since 2000")],
        datetime=None,
        start="2001-01-01T00:00:00Z",
        end="2023-12-31T23:59:59Z",
        properties={"geoseg:labels": "hansen-loss"},
    ),
]

_SHAPEFILE = (".dbf", ".shx", ".prj")

REGIONS = [
    RegionEntry("zion-park", "zion/zion.gpkg", "Zion National Park boundary", "UNIT_CODE"),
    RegionEntry(
        "naturalearth-countries",
        "regions/naturalearth_lowres.shp",
        "Natural Earth 1:110m countries",
        "iso_a3",
        (*_SHAPEFILE, ".cpg"),
    ),
    RegionEntry(
        "rondonia",
        "rondonia_prodes/rondonia.shp",
        "Rondonia state outline (IBGE)",
        "CD_GEOCUF",
        (*_SHAPEFILE, ".cpg"),
    ),
    RegionEntry(
        "mato-grosso",
        "rondonia_prodes/mt.shp",
        "Mato Grosso state outline (IBGE)",
        "CD_GEOCUF",
        _SHAPEFILE,
    ),
    RegionEntry(
        "brazilian-legal-amazon",
        "rondonia_prodes/brazilian_legal_amazon.shp",
        "Brazilian Legal Amazon outline (IBGE)",
        "SPRCLASSE",
        (*_SHAPEFILE, ".cpg"),
    ),
]

COLLECTIONS = {
    "landsat": "Landsat scenes (imagery) to segment",
    "reference-maps": "Reference land-cover and forest maps (labels)",
    "regions": "Region outlines to search by and report statistics per region",
}


def _file_fields(relative: str) -> dict[str, Any]:
    path = data_dir() / relative
    return {"file:checksum": "1220" + sha256_file(path), "file:size": path.stat().st_size}


def _footprint(crs: CRS, bounds: tuple[float, float, float, float]) -> dict[str, Any]:
    outline = shapely.segmentize(box(*bounds), (bounds[2] - bounds[0]) / 20)
    geometry: dict[str, Any] = transform_geom(crs, "EPSG:4326", mapping(outline), precision=7)
    return geometry


def _lonlat_bbox(crs: CRS, bounds: tuple[float, float, float, float]) -> list[float]:
    west, south, east, north = transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)
    return [
        round(max(west, -180.0), 7),
        round(south, 7),
        round(min(east, 180.0), 7),
        round(north, 7),
    ]


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def raster_item(entry: RasterEntry) -> pystac.Item:
    """A STAC item for one raster, grid and checksums read from the file."""
    info = read_info(data_dir() / entry.href)
    if info.count != len(entry.bands):
        raise ValueError(
            f"{entry.href}: {info.count} bands in the file, {len(entry.bands)} declared"
        )
    grid = info.grid
    nodata = entry.nodata if entry.nodata is not None else info.nodata
    properties: dict[str, Any] = {"title": entry.title, **entry.properties}
    if entry.start is not None:
        properties["start_datetime"] = entry.start
        properties["end_datetime"] = entry.end
    classified = any(band.quality is not None for band in entry.bands)
    item = pystac.Item(
        id=entry.id,
        geometry=_footprint(grid.crs, grid.bounds),
        bbox=_lonlat_bbox(grid.crs, grid.bounds),
        datetime=_parse_time(entry.datetime),
        properties=properties,
        start_datetime=_parse_time(entry.start),
        end_datetime=_parse_time(entry.end),
        stac_extensions=[*EXTENSIONS, *([CLASSIFICATION_EXTENSION] if classified else [])],
    )
    item.properties["proj:code"] = f"EPSG:{grid.crs.to_epsg()}"
    item.properties["proj:shape"] = [grid.height, grid.width]
    item.properties["proj:transform"] = list(grid.transform)[:6]
    eo_bands = []
    raster_bands = []
    for band in entry.bands:
        eo_band: dict[str, Any] = {"name": band.name, "description": band.description}
        if band.common_name:
            eo_band["common_name"] = band.common_name
        eo_bands.append(eo_band)
        raster_band: dict[str, Any] = {
            "data_type": info.dtype,
            "scale": band.scale,
            "offset": band.offset,
            "unit": band.unit,
        }
        if nodata is not None:
            raster_band["nodata"] = nodata
        if band.saturation is not None:
            raster_band[SATURATION_FIELD] = band.saturation
        if band.quality is not None:
            raster_band.update(stac_fields(band.quality))
        raster_bands.append(raster_band)
    role = "data" if entry.collection == "landsat" else "labels"
    item.add_asset(
        "data",
        pystac.Asset(
            href=entry.href,
            media_type=pystac.MediaType.GEOTIFF,
            roles=[role],
            title=entry.title,
            extra_fields={
                "eo:bands": eo_bands,
                "raster:bands": raster_bands,
                **_file_fields(entry.href),
            },
        ),
    )
    for index, extra in enumerate(entry.extra_assets):
        item.add_asset(
            f"metadata-{index}",
            pystac.Asset(
                href=extra,
                media_type=pystac.MediaType.XML,
                roles=["metadata"],
                extra_fields=_file_fields(extra),
            ),
        )
    return item


def region_item(entry: RegionEntry) -> pystac.Item:
    """A STAC item for one vector file of regions."""
    path = data_dir() / entry.href
    info = pyogrio.read_info(path)
    crs = CRS.from_user_input(info["crs"])
    bounds = tuple(float(value) for value in info["total_bounds"])
    lonlat = _lonlat_bbox(crs, bounds)  # type: ignore[arg-type]
    item = pystac.Item(
        id=entry.id,
        geometry=mapping(box(*lonlat)),
        bbox=lonlat,
        datetime=None,
        start_datetime=datetime(1900, 1, 1, tzinfo=UTC),
        end_datetime=datetime(2100, 1, 1, tzinfo=UTC),
        properties={
            "title": entry.title,
            "geoseg:id_field": entry.id_field,
            "geoseg:features": int(info["features"]),
            "geoseg:layer": pyogrio.list_layers(path)[0][0],
        },
        stac_extensions=list(EXTENSIONS),
    )
    item.properties["proj:code"] = f"EPSG:{crs.to_epsg()}"
    media = (
        "application/geopackage+sqlite3"
        if entry.href.endswith(".gpkg")
        else "application/x-shapefile"
    )
    item.add_asset(
        "data",
        pystac.Asset(
            href=entry.href,
            media_type=media,
            roles=["data"],
            title=entry.title,
            extra_fields=_file_fields(entry.href),
        ),
    )
    stem = entry.href.rsplit(".", 1)[0]
    for suffix in entry.sidecars:
        item.add_asset(
            f"sidecar{suffix.replace('.', '-')}",
            pystac.Asset(
                href=stem + suffix, roles=["metadata"], extra_fields=_file_fields(stem + suffix)
            ),
        )
    return item


def _collection(name: str, items: list[pystac.Item]) -> pystac.Collection:
    collection = pystac.Collection(
        id=name,
        description=COLLECTIONS[name],
        extent=pystac.Extent(
            pystac.SpatialExtent([list(item.bbox or []) for item in items]),
            pystac.TemporalExtent([[None, None]]),
        ),
        license="various",
        stac_extensions=list(EXTENSIONS),
    )
    for item in items:
        collection.add_item(item)
    collection.update_extent_from_items()
    return collection


def build_catalog() -> pystac.Catalog:
    """The whole catalog in memory (not yet saved)."""
    catalog = pystac.Catalog(
        id="geoseg-sample-data",
        description="geoseg's sample scenes, reference maps and regions (static STAC)",
        extra_fields={"geoseg:href_base": HREF_BASE},
    )
    catalog.add_child(_collection("landsat", [raster_item(entry) for entry in SCENES]))
    catalog.add_child(
        _collection("reference-maps", [raster_item(entry) for entry in REFERENCE_MAPS])
    )
    catalog.add_child(_collection("regions", [region_item(entry) for entry in REGIONS]))
    return catalog


def _strip_self_links(directory: Path) -> None:
    """Drop the machine-specific absolute ``self`` links pystac may leave."""
    for path in directory.rglob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        data["links"] = [link for link in data.get("links", []) if link.get("rel") != "self"]
        path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def main() -> None:
    """Rebuild ``data_catalog/`` from the data directory."""
    for name in COLLECTIONS:
        shutil.rmtree(CATALOG_DIR / name, ignore_errors=True)
    catalog = build_catalog()
    catalog.normalize_hrefs(str(CATALOG_DIR))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    _strip_self_links(CATALOG_DIR)
    print(f"wrote {CATALOG_DIR / 'catalog.json'} from {data_dir()}")


if __name__ == "__main__":
    main()
