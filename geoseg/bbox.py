"""Bounding boxes: parsing, validation, reprojection, antimeridian splitting, clipping.

A :class:`BBox` is ``(minx, miny, maxx, maxy)`` together with its CRS, so a
bare 4-tuple never travels without saying which coordinates it holds. Every
function here is pure: coordinates in, coordinates out.

Rules (normalised once, at the boundary):

- Values must be finite, and ``miny < maxy``.
- In a projected CRS ``minx < maxx``. In longitude/latitude, ``minx > maxx``
  means the box crosses the antimeridian (the STAC convention): it is *split*
  into two boxes, ``[minx, 180]`` and ``[-180, maxx]``, never swapped.
- Longitudes must lie in ``[-180, 180]`` and latitudes in ``[-90, 90]``.
- Reprojection densifies the edges (21 points per edge) so curved edges in the
  target CRS are covered.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_bounds

from geoseg.errors import BBoxError

LONLAT = CRS.from_epsg(4326)
DENSIFY_POINTS = 21
"""Points added along each edge when a bbox is reprojected."""


class BBoxClippedWarning(UserWarning):
    """A bbox reached outside the catalog's scenes and was clipped to them."""


@dataclass(frozen=True, slots=True)
class BBox:
    """An axis-aligned box ``(minx, miny, maxx, maxy)`` in ``crs``.

    Build one with :func:`make_bbox` (which validates); in longitude/latitude a
    box with ``minx > maxx`` crosses the antimeridian.
    """

    minx: float
    miny: float
    maxx: float
    maxy: float
    crs: CRS

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(minx, miny, maxx, maxy)``."""
        return (self.minx, self.miny, self.maxx, self.maxy)

    @property
    def crosses_antimeridian(self) -> bool:
        """True for a longitude/latitude box whose ``minx`` exceeds its ``maxx``."""
        return bool(self.crs.is_geographic) and self.minx > self.maxx

    def __str__(self) -> str:
        values = ", ".join(f"{value:.10g}" for value in self.bounds)
        return f"[{values}] ({self.crs.to_string()})"


_AUTHORITY_CODE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_]*:{1,2})+[A-Za-z0-9_.]+$")
"""``EPSG:4326``, ``ESRI:102003``, ``OGC:CRS84``, ``urn:ogc:def:crs:EPSG::4326``."""
_WKT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*\s*[\[(]")
"""WKT 1 or 2: a keyword, then ``[`` (or ``(``)."""
_WELL_KNOWN = frozenset({"WGS84", "WGS72", "NAD27", "NAD83", "CRS84", "CRS83", "CRS27"})
"""Datum names GDAL reads as geographic CRSs."""
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _crs_from_text(text: str) -> CRS:
    """Parse CRS text of an accepted form; no form that names a file or URL gets here."""
    if text.isdigit():
        return CRS.from_epsg(int(text))
    if text.startswith("{"):
        from pyproj import CRS as ProjCRS

        return CRS.from_wkt(ProjCRS.from_json(text).to_wkt())
    if text.startswith("+"):
        return CRS.from_proj4(text)
    if _WKT.match(text):
        return CRS.from_wkt(text)
    return CRS.from_user_input(text)  # an authority code (the regex was checked)


def parse_crs(text: str | CRS) -> CRS:
    """A CRS from an EPSG code (``EPSG:4326`` or ``4326``), an authority code, WKT or PROJJSON.

    PROJ strings (``+proj=...``) are accepted too. URLs and file paths are
    refused before any library sees them: GDAL would fetch or read them. PROJ
    itself stays offline unless the user sets ``PROJ_NETWORK=ON``.

    Raises
    ------
    BBoxError
        A URL, a path, or text that is no known CRS.
    """
    if isinstance(text, CRS):
        return text
    stripped = str(text).strip()
    if _URL.match(stripped) or stripped.startswith(("/vsi", "/", "./", "../", "~")):
        raise BBoxError(
            f"CRS {stripped!r}: a URL or file path; geoseg does not fetch or read CRS "
            "definitions: give an EPSG code (EPSG:4326), WKT or PROJJSON text"
        )
    accepted = (
        stripped.isdigit()
        or stripped.startswith(("{", "+"))
        or stripped.upper() in _WELL_KNOWN
        or _WKT.match(stripped) is not None
        or _AUTHORITY_CODE.match(stripped) is not None
    )
    try:
        if not accepted:
            raise CRSError(stripped)
        return _crs_from_text(stripped)
    except (CRSError, ValueError):
        raise BBoxError(
            f"unknown CRS {stripped!r}; give an EPSG code ('EPSG:4326', 'EPSG:32612'), "
            "WKT or PROJJSON"
        ) from None


def parse_bbox_text(text: str) -> tuple[float, float, float, float]:
    """Parse ``"MINX,MINY,MAXX,MAXY"`` into four floats (values are checked later)."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 4:
        raise BBoxError(f"bbox {text!r}: expected four numbers MINX,MINY,MAXX,MAXY")
    try:
        minx, miny, maxx, maxy = (float(part) for part in parts)
    except ValueError:
        raise BBoxError(f"bbox {text!r}: every value must be a number") from None
    return (minx, miny, maxx, maxy)


def make_bbox(values: Sequence[float], crs: str | CRS = LONLAT) -> BBox:
    """Validate ``values`` = ``(minx, miny, maxx, maxy)`` in ``crs`` into a :class:`BBox`.

    Raises
    ------
    BBoxError
        Not four finite numbers, ``min > max`` (except longitudes crossing the
        antimeridian), or longitudes/latitudes out of range.
    """
    if len(values) != 4:
        raise BBoxError(f"bbox {list(values)}: expected four numbers minx, miny, maxx, maxy")
    minx, miny, maxx, maxy = (float(value) for value in values)
    crs = parse_crs(crs)
    shown = f"bbox [{minx}, {miny}, {maxx}, {maxy}] in {crs.to_string()}"
    if not all(math.isfinite(value) for value in (minx, miny, maxx, maxy)):
        raise BBoxError(f"{shown}: every value must be a finite number (no NaN or inf)")
    if miny >= maxy:
        raise BBoxError(f"{shown}: miny must be less than maxy; give MINX,MINY,MAXX,MAXY")
    if crs.is_geographic:
        if not (-180 <= minx <= 180 and -180 <= maxx <= 180):
            raise BBoxError(f"{shown}: longitudes must lie between -180 and 180")
        if not (-90 <= miny <= 90 and -90 <= maxy <= 90):
            raise BBoxError(f"{shown}: latitudes must lie between -90 and 90")
        if minx == maxx:
            raise BBoxError(f"{shown}: the box has zero width")
    elif minx >= maxx:
        raise BBoxError(f"{shown}: minx must be less than maxx; give MINX,MINY,MAXX,MAXY")
    return BBox(minx, miny, maxx, maxy, crs)


def split_antimeridian(bbox: BBox) -> list[BBox]:
    """The box itself, or its two halves when it crosses the antimeridian."""
    if not bbox.crosses_antimeridian:
        return [bbox]
    return [
        BBox(bbox.minx, bbox.miny, 180.0, bbox.maxy, bbox.crs),
        BBox(-180.0, bbox.miny, bbox.maxx, bbox.maxy, bbox.crs),
    ]


def to_lonlat(bbox: BBox) -> list[BBox]:
    """``bbox`` in longitude/latitude, as one box or two split at the antimeridian."""
    if bbox.crs == LONLAT:
        return split_antimeridian(bbox)
    parts: list[BBox] = []
    for part in split_antimeridian(bbox):
        minx, miny, maxx, maxy = transform_bounds(
            part.crs, LONLAT, *part.bounds, densify_pts=DENSIFY_POINTS
        )
        parts.extend(split_antimeridian(BBox(minx, miny, maxx, maxy, LONLAT)))
    return parts


def to_crs(bbox: BBox, crs: str | CRS) -> BBox:
    """The smallest box in ``crs`` holding ``bbox`` (edges densified).

    A longitude/latitude box crossing the antimeridian is transformed half by
    half and the halves are joined, which suits projected targets such as a
    UTM zone on the antimeridian.
    """
    target = parse_crs(crs)
    if bbox.crs == target and not bbox.crosses_antimeridian:
        return bbox
    boxes = [
        transform_bounds(part.crs, target, *part.bounds, densify_pts=DENSIFY_POINTS)
        for part in split_antimeridian(bbox)
    ]
    if any(not all(math.isfinite(value) for value in box) for box in boxes):
        raise BBoxError(f"bbox {bbox} cannot be expressed in {target.to_string()}")
    if target.is_geographic and len(boxes) == 1:
        minx, miny, maxx, maxy = boxes[0]
        return BBox(minx, miny, maxx, maxy, target)
    return BBox(
        min(box[0] for box in boxes),
        min(box[1] for box in boxes),
        max(box[2] for box in boxes),
        max(box[3] for box in boxes),
        target,
    )


def intersection(first: BBox, second: BBox) -> BBox | None:
    """The overlap of two boxes in the same CRS (neither crossing the antimeridian)."""
    if first.crs != second.crs:
        raise BBoxError(f"cannot intersect {first} with {second}: different CRSs")
    minx, miny = max(first.minx, second.minx), max(first.miny, second.miny)
    maxx, maxy = min(first.maxx, second.maxx), min(first.maxy, second.maxy)
    if minx >= maxx or miny >= maxy:
        return None
    return BBox(minx, miny, maxx, maxy, first.crs)


def union(boxes: Iterable[BBox]) -> BBox:
    """The smallest box holding all ``boxes`` (same CRS, at least one)."""
    items = list(boxes)
    if not items:
        raise BBoxError("no boxes to join")
    crs = items[0].crs
    return BBox(
        min(box.minx for box in items),
        min(box.miny for box in items),
        max(box.maxx for box in items),
        max(box.maxy for box in items),
        crs,
    )


def describe_coverage(footprints: dict[str, BBox]) -> str:
    """One line per footprint, ``id: [minx, miny, maxx, maxy] (CRS)``, for error messages."""
    return "\n".join(f"  {name}: {box}" for name, box in sorted(footprints.items()))


def overlapping(parts: Sequence[BBox], footprints: dict[str, BBox]) -> list[str]:
    """Ids of the footprints (lon/lat) that any of the lon/lat ``parts`` overlaps."""
    names = []
    for name, footprint in footprints.items():
        if any(
            intersection(part, half) is not None
            for part in parts
            for half in split_antimeridian(footprint)
        ):
            names.append(name)
    return sorted(names)


def clip_to_coverage(bbox: BBox, coverage: BBox, *, what: str = "the matching scenes") -> BBox:
    """``bbox`` clipped to ``coverage`` (same CRS), with a warning when it shrank.

    Raises
    ------
    BBoxError
        When the two do not overlap at all.
    """
    clipped = intersection(bbox, coverage)
    if clipped is None:
        raise BBoxError(f"bbox {bbox} lies outside {what}, which cover {coverage}")
    if clipped != bbox:
        warnings.warn(
            f"bbox {bbox} reaches outside {what}; clipped to {clipped}",
            BBoxClippedWarning,
            stacklevel=2,
        )
    return clipped
