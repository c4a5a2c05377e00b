"""Finding scenes: the embedded static STAC catalog, another one on disk, or a STAC API.

Items become :class:`SceneEntry` values (grid, bands by common name with scale,
offset and nodata, datetime interval, files with their SHA-256), so nothing
downstream touches STAC dictionaries. Local asset hrefs are relative to the
data directory (:func:`geoseg.catalog.datadir.data_dir`); every file's checksum is
verified before use (:func:`verify_entry`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from affine import Affine

from geoseg.bbox import (
    BBox,
    describe_coverage,
    make_bbox,
    overlapping,
    parse_crs,
    to_lonlat,
)
from geoseg.catalog.datadir import data_dir
from geoseg.errors import BBoxError, CatalogError, InputError, NoSceneError
from geoseg.grid import RasterGrid
from geoseg.io.checksums import verify_sha256
from geoseg.io.stac import read_static_catalog, search_stac_api
from geoseg.quality import QUALITY_FIELD, SATURATION_FIELD, QualityBand, parse_convention

EMBEDDED = Path(__file__).resolve().parents[2] / "data_catalog" / "catalog.json"
"""The catalog shipped with geoseg, describing the sample data."""

IMAGERY = "landsat"
"""Collection of the embedded catalog holding imagery to segment."""


@dataclass(frozen=True, slots=True)
class BandInfo:
    """One band of a scene file: 1-based ``index``, names and physical scaling."""

    index: int
    name: str
    common_name: str | None
    scale: float
    offset: float
    nodata: float | None
    unit: str
    saturation: float | None = None


@dataclass(frozen=True, slots=True)
class AssetFile:
    """A file of an entry: where it is (path or URL) and its SHA-256 (when known)."""

    href: str
    sha256: str | None


@dataclass(frozen=True, slots=True)
class SceneEntry:
    """One catalog item: a scene, a reference map or a regions file."""

    id: str
    collection: str
    start: datetime
    end: datetime
    footprint: BBox
    grid: RasterGrid | None
    bands: tuple[BandInfo, ...]
    data: AssetFile
    other_files: tuple[AssetFile, ...] = ()
    title: str = ""
    quality: QualityBand | None = None
    """The scene's quality band (cloud, shadow, snow, fill flags); None when it has none."""
    remote: bool = False
    """Found by a STAC API search: its http(s) hrefs are read over the network."""

    def band_indexes(self, common_names: Sequence[str]) -> list[int]:
        """1-based band indexes for ``common_names``; error naming any missing band."""
        by_name = {band.common_name: band.index for band in self.bands if band.common_name}
        by_name.update({band.name: band.index for band in self.bands})
        missing = [name for name in common_names if name not in by_name]
        if missing:
            available = ", ".join(sorted(n for n in by_name if n)) or "(none)"
            raise CatalogError(
                f"scene {self.id} has no band {', '.join(missing)}; it holds {available}"
            )
        return [by_name[name] for name in common_names]

    @property
    def date_text(self) -> str:
        """The acquisition date, or the interval for multi-date items."""
        if self.start.year <= 1900 and self.end.year >= 2100:
            return "any time"
        if self.start == self.end:
            return self.start.isoformat().replace("+00:00", "Z")
        return f"{self.start.date()}/{self.end.date()}"


@dataclass(frozen=True)
class Catalog:
    """All entries of a catalog, and where it came from."""

    location: str
    entries: tuple[SceneEntry, ...]
    remote: bool = False

    def collection(self, name: str) -> list[SceneEntry]:
        """Entries of one collection, sorted by start time then id."""
        return sorted(
            (entry for entry in self.entries if entry.collection == name),
            key=lambda entry: (entry.start, entry.id),
        )


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _parse_instant(text: str, *, end: bool) -> datetime:
    try:
        if len(text) == 4:
            year = int(text)
            return (
                datetime(year, 12, 31, 23, 59, 59, 999999, UTC)
                if end
                else datetime(year, 1, 1, tzinfo=UTC)
            )
        if len(text) == 7:
            first = date.fromisoformat(text + "-01")
            if not end:
                return datetime.combine(first, time.min, tzinfo=UTC)
            following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
            return datetime.combine(following, time.min, tzinfo=UTC) - timedelta(microseconds=1)
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)
        return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise CatalogError(
            f"datetime {text!r}: expected YYYY, YYYY-MM, YYYY-MM-DD or an ISO 8601 date-time"
        ) from None


def parse_datetime_range(text: str | None) -> tuple[datetime, datetime]:
    """``DATE``, ``START/END``, ``../END`` or ``START/..`` into a UTC interval.

    A bare date covers that whole day. None (or ``..``) means any time.
    """
    lowest = datetime.min.replace(tzinfo=UTC)
    highest = datetime.max.replace(tzinfo=UTC)
    if text is None or text.strip() in ("", "..", "../.."):
        return lowest, highest
    parts = text.split("/")
    if len(parts) == 1:
        return _parse_instant(parts[0], end=False), _parse_instant(parts[0], end=True)
    if len(parts) != 2:
        raise CatalogError(f"datetime {text!r}: expected DATE or START/END")
    start = lowest if parts[0] in ("", "..") else _parse_instant(parts[0], end=False)
    stop = highest if parts[1] in ("", "..") else _parse_instant(parts[1], end=True)
    if start > stop:
        raise CatalogError(f"datetime {text!r}: the start is after the end")
    return start, stop


def _href(text: Any) -> str:
    href = str(text)
    return href if is_api_url(href) else href.removeprefix("./")


def _checksum(fields: dict[str, Any]) -> str | None:
    multihash = fields.get("file:checksum") or fields.get("checksum:multihash")
    if isinstance(multihash, str) and multihash.startswith("1220") and len(multihash) == 68:
        return multihash[4:].lower()
    return None


def _grid(properties: dict[str, Any]) -> RasterGrid | None:
    code = properties.get("proj:code")
    if code is None and properties.get("proj:epsg") is not None:
        code = f"EPSG:{properties['proj:epsg']}"
    shape, transform = properties.get("proj:shape"), properties.get("proj:transform")
    if code is None or shape is None or transform is None:
        return None
    return RasterGrid(parse_crs(str(code)), Affine(*transform[:6]), int(shape[0]), int(shape[1]))


def _bands(asset: dict[str, Any]) -> tuple[BandInfo, ...]:
    eo_bands = asset.get("eo:bands") or []
    raster_bands = asset.get("raster:bands") or [{} for _ in eo_bands]
    bands = []
    for index, (eo_band, raster_band) in enumerate(zip(eo_bands, raster_bands, strict=False), 1):
        nodata = raster_band.get("nodata")
        bands.append(
            BandInfo(
                index=index,
                name=str(eo_band.get("name", f"band{index}")),
                common_name=eo_band.get("common_name"),
                scale=float(raster_band.get("scale", 1.0)),
                offset=float(raster_band.get("offset", 0.0)),
                nodata=None if nodata is None else float(nodata),
                unit=str(raster_band.get("unit", "")),
                saturation=_optional_float(raster_band.get(SATURATION_FIELD)),
            )
        )
    return tuple(bands)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _quality_band(asset: dict[str, Any], identifier: str) -> QualityBand | None:
    """The band whose ``raster:bands`` entry names a quality convention (at most one)."""
    try:
        found = [
            QualityBand(
                index, parse_convention(str(band[QUALITY_FIELD]), f"STAC item {identifier}")
            )
            for index, band in enumerate(asset.get("raster:bands") or [], 1)
            if QUALITY_FIELD in band
        ]
    except InputError as error:
        raise CatalogError(str(error)) from None
    if len(found) > 1:
        raise CatalogError(
            f"STAC item {identifier}: bands {', '.join(str(q.index) for q in found)} all "
            f"declare {QUALITY_FIELD}; keep it on the one quality band"
        )
    return found[0] if found else None


def entry_from_item(item: dict[str, Any], *, remote: bool = False) -> SceneEntry:
    """A :class:`SceneEntry` from a STAC item dictionary (``remote``: from a STAC API)."""
    identifier = str(item.get("id", "?"))
    try:
        properties = item["properties"]
        instant = properties.get("datetime")
        start = properties.get("start_datetime") or instant
        end = properties.get("end_datetime") or instant
        assets = item["assets"]
        data_key = "data" if "data" in assets else sorted(assets)[0]
        data = assets[data_key]
        footprint = make_bbox(item["bbox"][:2] + item["bbox"][-2:], "EPSG:4326")
        return SceneEntry(
            id=identifier,
            collection=str(item.get("collection", "")),
            start=_parse_instant(str(start), end=False),
            end=_parse_instant(str(end), end=True),
            footprint=footprint,
            grid=_grid(properties),
            bands=_bands(data),
            data=AssetFile(_href(data["href"]), _checksum(data)),
            other_files=tuple(
                AssetFile(_href(asset["href"]), _checksum(asset))
                for key, asset in sorted(assets.items())
                if key != data_key
            ),
            title=str(properties.get("title", "")),
            quality=_quality_band(data, identifier),
            remote=remote,
        )
    except (KeyError, IndexError, TypeError, BBoxError) as error:
        raise CatalogError(f"STAC item {identifier}: missing or invalid field ({error})") from None


def _read_local(location: str) -> Catalog:
    fields, items = read_static_catalog(location)
    if fields.get("geoseg:href_base") != "data_dir":
        raise CatalogError(
            f"{location}: asset hrefs must be relative to the data directory; the catalog "
            'needs the field "geoseg:href_base": "data_dir" (see data_catalog/build.py)'
        )
    return Catalog(location, tuple(entry_from_item(item) for item in items))


_open_local = cache(_read_local)


def is_api_url(location: str | Path | None) -> bool:
    """True for an ``http(s)://`` STAC API address."""
    return isinstance(location, str) and location.startswith(("http://", "https://"))


def open_catalog(location: str | Path | None = None, *, cached: bool = True) -> Catalog:
    """The static catalog at ``location`` (default: the embedded one).

    A catalog is read once per process unless ``cached`` is False, which reads
    it from disk again (a long-running scheduler sees the scenes added since).
    For a STAC API URL use :func:`search`, which queries it directly.
    """
    if is_api_url(location):
        raise CatalogError(f"{location}: a STAC API cannot be listed whole; search it by bbox")
    path = str(Path(location or EMBEDDED).resolve())
    return _open_local(path) if cached else _read_local(path)


def _overlaps_time(entry: SceneEntry, start: datetime, end: datetime) -> bool:
    return entry.start <= end and entry.end >= start


def search(
    bbox: BBox,
    datetime_range: str | None = None,
    *,
    location: str | Path | None = None,
    collection: str = IMAGERY,
    cached: bool = True,
) -> list[SceneEntry]:
    """Entries of ``collection`` overlapping ``bbox`` (any CRS) within ``datetime_range``.

    A static catalog is read as by :func:`open_catalog` (``cached``).

    Raises
    ------
    BBoxError
        The bbox lies outside every entry of the collection; the message lists
        the catalog's coverage.
    NoSceneError
        Entries cover the bbox but none in the date range (the message lists
        the dates available there), or a STAC API returns no item.
    CatalogError
        The catalog cannot be read or has no such collection.
    """
    parts = to_lonlat(bbox)
    start, end = parse_datetime_range(datetime_range)
    if is_api_url(location):
        items = search_stac_api(
            str(location),
            bboxes=[part.bounds for part in parts],
            datetime=datetime_range,
            collections=[collection],
        )
        entries = [entry_from_item(item, remote=True) for item in items]
        if not entries:
            raise NoSceneError(f"{location}: no items over {bbox} for {datetime_range}")
        return sorted(entries, key=lambda entry: (entry.start, entry.id))
    catalog = open_catalog(location, cached=cached)
    candidates = catalog.collection(collection)
    if not candidates:
        raise CatalogError(f"{catalog.location}: no collection {collection!r}")
    footprints = {entry.id: entry.footprint for entry in candidates}
    over_bbox = set(overlapping(parts, footprints))
    if not over_bbox:
        raise BBoxError(
            f"bbox {bbox} lies outside every scene of {catalog.location} "
            f"(collection {collection}); the catalog covers:\n{describe_coverage(footprints)}"
        )
    found = [
        entry for entry in candidates if entry.id in over_bbox and _overlaps_time(entry, start, end)
    ]
    if not found:
        dates = ", ".join(
            f"{entry.id} ({entry.date_text})" for entry in candidates if entry.id in over_bbox
        )
        raise NoSceneError(f"no scene over bbox {bbox} in {datetime_range}; scenes there: {dates}")
    return found


def is_remote_href(href: str) -> bool:
    """True for an href GDAL would read over the network or through a virtual file system."""
    return "://" in href or href.startswith("/vsi")


def local_path(href: str, *, allow_external_hrefs: bool = False) -> Path:
    """The file of a local asset href, confined to the data directory.

    Hrefs are relative to the data directory; one that leaves it (``../``) or
    is absolute is refused unless ``allow_external_hrefs``, and a remote one
    (``http``, ``/vsicurl/``...) always is: remote files are read only for the
    items of a STAC API search.

    Raises
    ------
    CatalogError
        The href is remote, or leaves the data directory.
    """
    if is_remote_href(href):
        raise CatalogError(
            f"{href}: a remote href in a static catalog; geoseg reads remote files only for "
            "items found by a STAC API search (--catalog https://...)"
        )
    root = data_dir()
    path = Path(href)
    full = path if path.is_absolute() else root / path
    inside = Path(os.path.normpath(full)).is_relative_to(os.path.normpath(root.absolute()))
    if not inside and not allow_external_hrefs:
        raise CatalogError(
            f"{href}: the catalog href leads outside the data directory {root}; catalog hrefs "
            "are relative to it: fix the catalog, or pass --allow-external-hrefs if you "
            "trust it"
        )
    return full


@cache
def _verified(path: Path, expected: str, mtime_ns: int, size: int) -> None:
    verify_sha256(path, expected)


def _verify(asset: AssetFile, entry: SceneEntry, allow_external_hrefs: bool) -> str:
    if entry.remote and is_api_url(asset.href):
        return asset.href
    try:
        path = local_path(asset.href, allow_external_hrefs=allow_external_hrefs)
    except CatalogError as error:
        raise CatalogError(f"catalog item {entry.id}: {error}") from None
    if not path.exists():
        raise CatalogError(
            f"{path}: file of catalog item {entry.id} is missing from the data directory "
            f"{data_dir()}; set GEOSEG_DATA_DIR to the folder holding the sample data"
        )
    if asset.sha256 is None:
        raise CatalogError(f"{path}: catalog item {entry.id} records no SHA-256 for this file")
    stat = path.stat()
    _verified(path, asset.sha256, stat.st_mtime_ns, stat.st_size)
    return str(path)


def verify_entry(entry: SceneEntry, *, allow_external_hrefs: bool = False) -> str:
    """Check every file of ``entry`` against its recorded SHA-256; return the data file.

    Local hrefs must stay in the data directory unless ``allow_external_hrefs``
    (see :func:`local_path`); http(s) hrefs are read only for entries of a
    STAC API search.

    Raises
    ------
    ChecksumError
        A file does not match its checksum (corrupt or replaced).
    CatalogError
        A file is missing, has no recorded checksum, or its href is refused.
    """
    for other in entry.other_files:
        _verify(other, entry, allow_external_hrefs)
    return _verify(entry.data, entry, allow_external_hrefs)


def describe(entry: SceneEntry) -> dict[str, Any]:
    """A one-line-per-field summary of ``entry`` for listings."""
    grid = entry.grid
    return {
        "id": entry.id,
        "collection": entry.collection,
        "datetime": entry.date_text,
        "bands": ",".join(band.common_name or band.name for band in entry.bands),
        "crs": grid.crs.to_string() if grid else "",
        "shape": f"{grid.height}x{grid.width}" if grid else "",
        "bbox": ",".join(f"{value:.4f}" for value in entry.footprint.bounds),
        "href": entry.data.href,
        "quality": (
            f"band {entry.quality.index} ({entry.quality.convention})" if entry.quality else "none"
        ),
    }


REGIONS = "regions"
"""Collection of the embedded catalog holding region outlines."""


def region_file(name_or_path: str | Path, *, location: str | Path | None = None) -> Path:
    """A regions file: a region item id of the catalog (verified), or a path as given."""
    if Path(name_or_path).exists():
        return Path(name_or_path)
    entries = {entry.id: entry for entry in open_catalog(location).collection(REGIONS)}
    entry = entries.get(str(name_or_path))
    if entry is None:
        raise CatalogError(
            f"regions {name_or_path!r}: neither a file nor a region of the catalog; "
            f"catalog regions: {', '.join(sorted(entries))}"
        )
    return Path(verify_entry(entry))
