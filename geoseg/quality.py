"""Quality bands: which pixels are cloud, shadow, snow, saturated or fill, and masks of them.

A scene's quality band follows one of three conventions (:class:`Convention`):

- ``landsat-c2-qa-pixel``: Landsat Collection 2 ``QA_PIXEL``, uint16 bit flags
  (bit 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow, 5 snow,
  6 clear, 7 water; two-bit confidences in bits 8-15). A pixel is masked when
  any of bits 0-5 is set; the confidence pairs are described but not used,
  because the single-bit flags are USGS's own decision from them.
- ``fmask``: Fmask class codes (0 clear land, 1 water, 2 cloud shadow, 3 snow,
  4 cloud, 255 fill), as in the Chiapas stacks' band 8. Codes 2, 3, 4 and 255
  are masked.
- ``sentinel2-l2a-scl``: the Sentinel-2 L2A scene classification (0 no data,
  1 saturated or defective, 2 dark area, 3 cloud shadow, 4 vegetation, 5 not
  vegetated, 6 water, 7 unclassified, 8 / 9 cloud medium / high probability,
  10 thin cirrus, 11 snow). Classes 0, 1, 3, 8, 9, 10 and 11 are masked.
  Class 2 (dark area: topographic shadow, but also burnt ground, dark soil and
  wet surfaces) and 7 (unclassified, mostly clear land) are kept: masking them
  would delete real dark land cover, which is what change detection looks for.

Every masked pixel has one :class:`Condition`. Clouds and their shadows
(``GROWN``) are grown by a buffer (:func:`grow_mask`, a square of side
``2 * N + 1`` as Fmask dilates; Fmask's default is :data:`~geoseg.limits.DEFAULT_MASK_BUFFER` =
3 px), because cloud edges and thin cloud around them are missed by every
detector; fill, saturation and snow are masked as they are. A mask grown
window by window reads each window with a halo of the buffer
(:func:`mask_with_halo`), so it does not depend on how the raster is cut.

The tables here are the one place the conventions are written: the catalog
builder writes them into the STAC items (:func:`stac_fields`, the STAC
``classification`` extension) and the readers decode with them. Pure numpy;
no file is read here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from geoseg.errors import InputError
from geoseg.grid import PixelWindow
from geoseg.limits import MAX_MASK_BUFFER

CLASSIFICATION_EXTENSION = "https://stac-extensions.github.io/classification/v2.0.0/schema.json"
QUALITY_FIELD = "geoseg:quality"
"""``raster:bands`` field naming the convention of a scene's quality band."""
SATURATION_FIELD = "geoseg:saturation"
"""``raster:bands`` field: the raw value a band holds where the sensor saturated."""


class Convention(StrEnum):
    """How a quality band encodes its flags."""

    LANDSAT_QA_PIXEL = "landsat-c2-qa-pixel"
    FMASK = "fmask"
    SENTINEL2_SCL = "sentinel2-l2a-scl"


class Condition(StrEnum):
    """Why a pixel is masked."""

    FILL = "fill"
    SATURATED = "saturated"
    CLOUD = "cloud"
    DILATED_CLOUD = "dilated_cloud"
    CIRRUS = "cirrus"
    CLOUD_SHADOW = "cloud_shadow"
    SNOW = "snow"


GROWN = frozenset(
    {Condition.CLOUD, Condition.DILATED_CLOUD, Condition.CIRRUS, Condition.CLOUD_SHADOW}
)
"""Conditions grown by the mask buffer: clouds and cloud shadows."""


@dataclass(frozen=True, slots=True)
class QualityClass:
    """One code of a class-coded quality band, and the condition it masks (None: kept)."""

    value: int
    name: str
    description: str
    condition: Condition | None = None


@dataclass(frozen=True, slots=True)
class BitField:
    """Bits ``offset .. offset + length - 1`` of a bit-flag quality band.

    ``classes`` name each value of the field; the pixel is masked for
    ``condition`` when the field holds one of ``masked_values``.
    """

    offset: int
    length: int
    name: str
    description: str
    classes: tuple[tuple[int, str], ...]
    condition: Condition | None = None
    masked_values: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class QualityBand:
    """A scene's quality band: its 1-based index in the data file and its convention."""

    index: int
    convention: Convention


FMASK_CLASSES = (
    QualityClass(0, "clear_land", "clear land"),
    QualityClass(1, "water", "clear water"),
    QualityClass(2, "cloud_shadow", "cloud shadow", Condition.CLOUD_SHADOW),
    QualityClass(3, "snow", "snow", Condition.SNOW),
    QualityClass(4, "cloud", "cloud", Condition.CLOUD),
    QualityClass(255, "fill", "no observation", Condition.FILL),
)

SCL_CLASSES = (
    QualityClass(0, "no_data", "no data", Condition.FILL),
    QualityClass(1, "saturated_or_defective", "saturated or defective", Condition.SATURATED),
    QualityClass(2, "dark_area_pixels", "dark area or topographic shadow (kept: dark land too)"),
    QualityClass(3, "cloud_shadows", "cloud shadow", Condition.CLOUD_SHADOW),
    QualityClass(4, "vegetation", "vegetation"),
    QualityClass(5, "not_vegetated", "not vegetated"),
    QualityClass(6, "water", "water"),
    QualityClass(7, "unclassified", "unclassified (kept: mostly clear land)"),
    QualityClass(8, "cloud_medium_probability", "cloud, medium probability", Condition.CLOUD),
    QualityClass(9, "cloud_high_probability", "cloud, high probability", Condition.CLOUD),
    QualityClass(10, "thin_cirrus", "thin cirrus", Condition.CIRRUS),
    QualityClass(11, "snow", "snow or ice", Condition.SNOW),
)

_FLAG = ((0, "no"), (1, "yes"))
_CONFIDENCE = ((0, "none"), (1, "low"), (2, "medium"), (3, "high"))

QA_PIXEL_BITS = (
    BitField(0, 1, "fill", "fill (no observation)", _FLAG, Condition.FILL, (1,)),
    BitField(1, 1, "dilated_cloud", "dilated cloud", _FLAG, Condition.DILATED_CLOUD, (1,)),
    BitField(2, 1, "cirrus", "cirrus, high confidence (OLI)", _FLAG, Condition.CIRRUS, (1,)),
    BitField(3, 1, "cloud", "cloud, high confidence", _FLAG, Condition.CLOUD, (1,)),
    BitField(
        4, 1, "cloud_shadow", "cloud shadow, high confidence", _FLAG, Condition.CLOUD_SHADOW, (1,)
    ),
    BitField(5, 1, "snow", "snow, high confidence", _FLAG, Condition.SNOW, (1,)),
    BitField(6, 1, "clear", "clear: no cloud and no dilated cloud", _FLAG),
    BitField(7, 1, "water", "water", _FLAG),
    BitField(8, 2, "cloud_confidence", "cloud confidence", _CONFIDENCE),
    BitField(10, 2, "cloud_shadow_confidence", "cloud shadow confidence", _CONFIDENCE),
    BitField(12, 2, "snow_ice_confidence", "snow / ice confidence", _CONFIDENCE),
    BitField(14, 2, "cirrus_confidence", "cirrus confidence", _CONFIDENCE),
)

_CODE_TABLES: dict[Convention, tuple[QualityClass, ...]] = {
    Convention.FMASK: FMASK_CLASSES,
    Convention.SENTINEL2_SCL: SCL_CLASSES,
}


def parse_convention(text: str, where: str) -> Convention:
    """The :class:`Convention` named ``text``; an error naming ``where`` and the known ones."""
    try:
        return Convention(text)
    except ValueError:
        known = ", ".join(convention.value for convention in Convention)
        raise InputError(f"{where}: unknown quality convention {text!r}; known: {known}") from None


def decode(values: NDArray[Any], convention: Convention) -> dict[Condition, NDArray[np.bool_]]:
    """Per condition the convention can flag, where ``values`` (a quality band) flags it."""
    found: dict[Condition, NDArray[np.bool_]] = {}
    if convention is Convention.LANDSAT_QA_PIXEL:
        bits = np.asarray(values).astype(np.int64)
        for field in QA_PIXEL_BITS:
            if field.condition is None:
                continue
            part = (bits >> field.offset) & ((1 << field.length) - 1)
            found[field.condition] = np.isin(part, field.masked_values)
        return found
    codes = np.asarray(values)
    for spec in _CODE_TABLES[convention]:
        if spec.condition is not None:
            hit = codes == spec.value
            found[spec.condition] = found[spec.condition] | hit if spec.condition in found else hit
    return found


@dataclass(frozen=True)
class QualityMask:
    """Masked pixels, and the part of them that a buffer grows (clouds and shadows)."""

    masked: NDArray[np.bool_]
    growing: NDArray[np.bool_]


def quality_mask(
    values: NDArray[Any], convention: Convention, valid: NDArray[np.bool_] | None = None
) -> QualityMask:
    """The pixels ``values`` flags under ``convention``; only where ``valid`` (default: all)."""
    conditions = decode(values, convention)
    shape = np.shape(values)
    masked = np.zeros(shape, dtype=bool)
    growing = np.zeros(shape, dtype=bool)
    for condition, where in conditions.items():
        masked |= where
        if condition in GROWN:
            growing |= where
    if valid is not None:
        masked &= valid
        growing &= valid
    return QualityMask(masked, growing)


def saturated(values: NDArray[Any], saturation: Sequence[float | None]) -> NDArray[np.bool_]:
    """Pixels where any band of ``values`` ``(bands, rows, cols)`` holds its saturation value."""
    found = np.zeros(np.shape(values)[1:], dtype=bool)
    for band, level in zip(values, saturation, strict=True):
        if level is not None:
            found |= band == level
    return found


def check_buffer(pixels: int) -> int:
    """``pixels`` if a valid mask buffer (0 to the limit MAX_MASK_BUFFER), else an error."""
    if not 0 <= pixels <= MAX_MASK_BUFFER:
        raise InputError(f"mask buffer {pixels} px: give 0 to {MAX_MASK_BUFFER} pixels")
    return pixels


def grow_mask(mask: NDArray[np.bool_], pixels: int) -> NDArray[np.bool_]:
    """``mask`` dilated by ``pixels``: every pixel within ``pixels`` rows and columns of it.

    The structuring element is the square of side ``2 * pixels + 1`` (Fmask's
    dilation); pixels beyond the array's edge count as unmasked.
    """
    check_buffer(pixels)
    mask = np.asarray(mask, dtype=bool)
    if pixels == 0 or not mask.any():
        return mask.copy()
    grown: NDArray[np.uint8] = ndimage.maximum_filter(
        mask.view(np.uint8), size=2 * pixels + 1, mode="constant", cval=0
    )
    return grown.view(bool)


def crop_halo(array: NDArray[Any], pixels: int) -> NDArray[Any]:
    """The inside of ``array`` without a halo of ``pixels`` on each side of its last two axes."""
    if pixels == 0:
        return array
    return array[..., pixels:-pixels, pixels:-pixels]


def mask_with_halo(
    read: Callable[[PixelWindow], QualityMask], window: PixelWindow, pixels: int
) -> NDArray[np.bool_]:
    """The mask of ``window``, its growing part grown by ``pixels``, independent of the cut.

    ``read`` gives the mask of any window (it may extend past the raster);
    it is called once, on ``window`` padded by ``pixels``, so a cloud just
    outside ``window`` grows into it exactly as in a whole-raster mask.
    """
    padded = read(window.pad(pixels))
    grown = padded.masked | grow_mask(padded.growing, pixels)
    return np.asarray(crop_halo(grown, pixels), dtype=bool)


def stac_fields(convention: Convention) -> dict[str, Any]:
    """The ``raster:bands`` fields describing a quality band of ``convention``.

    ``geoseg:quality`` names the convention; the STAC classification
    extension lists its codes (``classification:classes``) or bit fields
    (``classification:bitfields``).
    """
    fields: dict[str, Any] = {QUALITY_FIELD: convention.value}
    if convention is Convention.LANDSAT_QA_PIXEL:
        fields["classification:bitfields"] = [
            {
                "offset": field.offset,
                "length": field.length,
                "name": field.name,
                "description": field.description,
                "classes": [{"value": value, "name": name} for value, name in field.classes],
            }
            for field in QA_PIXEL_BITS
        ]
        return fields
    fields["classification:classes"] = [
        {
            "value": spec.value,
            "name": spec.name,
            "description": spec.description,
            **({"nodata": True} if spec.condition is Condition.FILL else {}),
        }
        for spec in _CODE_TABLES[convention]
    ]
    return fields
