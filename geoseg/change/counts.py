"""Change statistics between two class maps on one grid, per region.

The work splits into an additive part and a final part:

* :func:`count_window` turns one window of BEFORE and AFTER class ids (uint8,
  255 excluded), the ground area of its rows and the masks of the regions that
  touch it into :class:`ChangeCounts`: pixel counts and areas of every
  ``(region, from class, to class)`` plus the excluded pixels of each region.
* :class:`ChangeCounts` add up across windows. Areas are kept as integer square
  centimetres (each pixel's ground area rounded to 1 cm2), so every sum is exact
  and the result is identical for any chunking and any order of summation.
* :func:`finalize` turns the total into tables: per region and class the area
  at each date, its change, IoU and Dice; per region the from-to transitions in
  hectares; per region the valid and excluded pixels and the deforestation
  (a forest class at BEFORE, a non-forest class at AFTER) in hectares and as a
  share of the BEFORE forest.

IoU and Dice compare the two dates' class masks by pixel count; areas are true
ground areas (see :mod:`geoseg.areas`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from geoseg.change.classmap import ClassSpec
from geoseg.change.loss import PROBABILITY_UNITS, LossRule, RegionEvidence
from geoseg.errors import ConfigError
from geoseg.grid import RasterGrid

AREA_UNITS_PER_M2 = 10_000  # areas are accumulated in integer cm2
AREA_UNITS_PER_HA = AREA_UNITS_PER_M2 * 10_000
_EXACT_FLOAT_LIMIT = 2**53  # integer sums in float64 are exact below this


@dataclass(frozen=True)
class ChangeCounts:
    """Additive counts of one or more windows.

    Attributes
    ----------
    pixels
        ``int64`` array ``(regions, classes, classes)``: valid pixels by
        ``(region, BEFORE class index, AFTER class index)``.
    area_cm2
        ``int64`` array of the same shape: their ground area in cm2.
    excluded_pixels
        ``int64`` array ``(regions,)``: pixels of the region excluded at either date.
    """

    pixels: NDArray[np.int64]
    area_cm2: NDArray[np.int64]
    excluded_pixels: NDArray[np.int64]

    @classmethod
    def zeros(cls, regions: int, classes: int) -> ChangeCounts:
        """Counts of nothing."""
        shape = (regions, classes, classes)
        return cls(
            np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.zeros(regions, np.int64)
        )

    def __add__(self, other: ChangeCounts) -> ChangeCounts:
        return ChangeCounts(
            self.pixels + other.pixels,
            self.area_cm2 + other.area_cm2,
            self.excluded_pixels + other.excluded_pixels,
        )


@dataclass(frozen=True)
class ChangeStatistics:
    """The final tables (pandas), one row per region x class / transition / region."""

    classes: pd.DataFrame
    transitions: pd.DataFrame
    regions: pd.DataFrame


def merge_classes(before: Sequence[ClassSpec], after: Sequence[ClassSpec]) -> tuple[ClassSpec, ...]:
    """The union of the two dates' classes, sorted by id.

    Raises
    ------
    ConfigError
        When one id has different names or forest flags at the two dates.
    """
    merged: dict[int, ClassSpec] = {spec.id: spec for spec in before}
    for spec in after:
        known = merged.get(spec.id)
        if known is not None and known != spec:
            raise ConfigError(
                f"class {spec.id} is {known.name!r} (forest={known.is_forest}) at BEFORE but "
                f"{spec.name!r} (forest={spec.is_forest}) at AFTER; give the two class maps "
                "the same name and forest flag for a shared id, or use different ids"
            )
        merged[spec.id] = spec
    return tuple(merged[key] for key in sorted(merged))


def set_forest_classes(
    classes: Sequence[ClassSpec], forest_ids: Sequence[int]
) -> tuple[ClassSpec, ...]:
    """``classes`` whose forest flags are exactly ``forest_ids`` (``--forest-classes``).

    Raises
    ------
    ConfigError
        When an id is not one of the classes.
    """
    known = sorted(spec.id for spec in classes)
    unknown = sorted(set(forest_ids) - set(known))
    if unknown:
        raise ConfigError(f"--forest-classes {unknown} are not classes; the classes are {known}")
    return tuple(spec.model_copy(update={"is_forest": spec.id in forest_ids}) for spec in classes)


def grid_summary(
    grid: RasterGrid,
    *,
    before: str,
    after: str,
    regions: str,
    rule: LossRule,
    probabilities: bool,
) -> pd.DataFrame:
    """One row stating the common grid and the counting rules, for the outputs."""
    return pd.DataFrame(
        {
            "before": [before],
            "after": [after],
            "regions": [regions],
            "grid_crs": [grid.crs.to_string()],
            "grid_transform": [",".join(f"{value:.12g}" for value in tuple(grid.transform)[:6])],
            "grid_height": [grid.height],
            "grid_width": [grid.width],
            "rule": [
                "common grid = BEFORE's grid clipped to the overlap of both rasters; each "
                "raster resampled onto it by nearest neighbour; a pixel is in a region when "
                "its centre is; only pixels valid at both dates count; areas are ground areas "
                "on the WGS 84 ellipsoid in every CRS (not map-plane areas)"
            ],
            "loss_rule": [
                "loss = forest at BEFORE and non-forest at AFTER, "
                + (
                    f"each call with probability >= {rule.min_probability:g}"
                    if probabilities
                    else "class maps taken as certain (no probabilities given)"
                )
                + f", in patches of >= {rule.min_loss_ha:g} ha; gain the reverse"
            ],
        }
    )


def class_index_lookup(classes: Sequence[ClassSpec]) -> NDArray[np.int64]:
    """A table ``class id (0-255) -> index into classes`` (-1 for unknown and excluded)."""
    table = np.full(256, -1, dtype=np.int64)
    for index, spec in enumerate(classes):
        table[spec.id] = index
    return table


def area_units(areas_m2: NDArray[np.float64]) -> NDArray[np.int64]:
    """Pixel ground areas in integer cm2 (rounded), any shape."""
    return np.rint(areas_m2 * AREA_UNITS_PER_M2).astype(np.int64)


def count_window(
    before: NDArray[np.uint8],
    after: NDArray[np.uint8],
    pixel_areas: NDArray[np.int64],
    region_masks: Sequence[tuple[int, NDArray[np.bool_]]],
    class_lookup: NDArray[np.int64],
    regions: int,
) -> ChangeCounts:
    """Counts of one window.

    Parameters
    ----------
    before, after
        Class ids on the same window (uint8, 255 excluded).
    pixel_areas
        Ground area of each pixel of the window, integer cm2
        (:func:`area_units`); anything that broadcasts to the window's shape.
    region_masks
        ``(region index, mask)`` for the regions touching the window; masks are
        boolean arrays of the window's shape and may overlap.
    class_lookup
        :func:`class_index_lookup` of the classes counted; ids it does not know
        are excluded.
    regions
        Total number of regions.
    """
    classes = int(class_lookup.max()) + 1
    counts = ChangeCounts.zeros(regions, classes)
    lookup = class_lookup.astype(np.int32)
    from_index = lookup[before]
    to_index = lookup[after]
    valid = (from_index >= 0) & (to_index >= 0)
    pair = np.where(valid, from_index * classes + to_index, 0)
    pixel_units = np.broadcast_to(pixel_areas, before.shape)
    for region, mask in region_masks:
        inside_valid = mask & valid
        pairs = pair[inside_valid]
        counts.pixels[region] += np.bincount(pairs, minlength=classes * classes).reshape(
            classes, classes
        )
        counts.area_cm2[region] += _exact_weighted_bincount(
            pairs, pixel_units[inside_valid], classes * classes
        ).reshape(classes, classes)
        counts.excluded_pixels[region] += int(np.count_nonzero(mask & ~valid))
    return counts


def _exact_weighted_bincount(
    bins: NDArray[np.int32], weights: NDArray[np.int64], length: int
) -> NDArray[np.int64]:
    """Integer sums of ``weights`` per bin, exact (float64 sums kept below 2**53)."""
    total = np.zeros(length, dtype=np.int64)
    if bins.size == 0:
        return total
    largest = int(weights.max())
    step = max(1, (_EXACT_FLOAT_LIMIT - 1) // max(largest, 1))
    for start in range(0, bins.size, step):
        part = np.bincount(
            bins[start : start + step],
            weights=weights[start : start + step].astype(np.float64),
            minlength=length,
        )
        total += part.astype(np.int64)
    return total


def _hectares(area_cm2: NDArray[np.int64]) -> NDArray[np.float64]:
    return area_cm2.astype(np.float64) / AREA_UNITS_PER_HA


def _ratio(numerator: NDArray[np.int64], denominator: NDArray[np.int64]) -> NDArray[np.float64]:
    out = np.full(numerator.shape, np.nan, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def finalize(
    counts: ChangeCounts,
    classes: Sequence[ClassSpec],
    region_ids: Sequence[object],
    evidence: RegionEvidence,
    *,
    later_dates: int = 0,
) -> ChangeStatistics:
    """Tables of the summed counts (see the module docstring).

    ``later_dates`` is the number of dates after AFTER that confirm losses;
    without any, ``loss_confirmed_ha`` and ``loss_unconfirmed_ha`` are NaN.
    """
    class_tables = [
        _class_rows(counts, classes, index, rid) for index, rid in enumerate(region_ids)
    ]
    transition_tables = [
        _transition_rows(counts, classes, index, rid) for index, rid in enumerate(region_ids)
    ]
    return ChangeStatistics(
        classes=pd.concat(class_tables, ignore_index=True),
        transitions=pd.concat(transition_tables, ignore_index=True),
        regions=_region_rows(counts, classes, region_ids, evidence, later_dates),
    )


def _class_rows(
    counts: ChangeCounts, classes: Sequence[ClassSpec], region: int, region_id: object
) -> pd.DataFrame:
    pixels = counts.pixels[region]
    area = counts.area_cm2[region]
    before_pixels, after_pixels = pixels.sum(axis=1), pixels.sum(axis=0)
    both = np.diagonal(pixels).astype(np.int64)
    union = before_pixels + after_pixels - both
    area_before, area_after = _hectares(area.sum(axis=1)), _hectares(area.sum(axis=0))
    return pd.DataFrame(
        {
            "region_id": [region_id] * len(classes),
            "class_id": np.array([spec.id for spec in classes], dtype=np.int64),
            "class_name": [spec.name for spec in classes],
            "is_forest": [spec.is_forest for spec in classes],
            "pixels_before": before_pixels,
            "pixels_after": after_pixels,
            "area_before_ha": area_before,
            "area_after_ha": area_after,
            "area_change_ha": _hectares(area.sum(axis=0) - area.sum(axis=1)),
            "pixels_both": both,
            "iou": _ratio(both, union),
            "dice": _ratio(2 * both, before_pixels + after_pixels),
        }
    )


def _transition_rows(
    counts: ChangeCounts, classes: Sequence[ClassSpec], region: int, region_id: object
) -> pd.DataFrame:
    from_index, to_index = (axis.tolist() for axis in np.nonzero(counts.pixels[region]))
    return pd.DataFrame(
        {
            "region_id": [region_id] * len(from_index),
            "from_class_id": np.array([classes[i].id for i in from_index], dtype=np.int64),
            "from_class": [classes[i].name for i in from_index],
            "to_class_id": np.array([classes[i].id for i in to_index], dtype=np.int64),
            "to_class": [classes[i].name for i in to_index],
            "pixels": counts.pixels[region][from_index, to_index],
            "area_ha": _hectares(counts.area_cm2[region][from_index, to_index]),
        }
    )


def _region_rows(
    counts: ChangeCounts,
    classes: Sequence[ClassSpec],
    region_ids: Sequence[object],
    evidence: RegionEvidence,
    later_dates: int,
) -> pd.DataFrame:
    confirmed = _hectares(evidence.confirmed_cm2)
    unconfirmed = _hectares(evidence.loss_cm2 - evidence.confirmed_cm2)
    if later_dates == 0:
        confirmed = unconfirmed = np.full(len(region_ids), np.nan)
    forest = np.array([spec.is_forest for spec in classes], dtype=bool)
    area = counts.area_cm2
    forest_before = area[:, forest, :].sum(axis=(1, 2))
    forest_after = area[:, :, forest].sum(axis=(1, 2))
    changed = area.sum(axis=(1, 2)) - np.trace(area, axis1=1, axis2=2)
    confidence = _ratio(evidence.confidence, evidence.confidence_pixels * PROBABILITY_UNITS)
    return pd.DataFrame(
        {
            "region_id": list(region_ids),
            "valid_pixels": counts.pixels.sum(axis=(1, 2)),
            "excluded_pixels": counts.excluded_pixels,
            "region_area_ha": _hectares(evidence.region_cm2),
            "valid_area_ha": _hectares(area.sum(axis=(1, 2))),
            "masked_before_ha": _hectares(evidence.unseen_cm2[:, 0]),
            "masked_before_share": _ratio(evidence.unseen_cm2[:, 0], evidence.region_cm2),
            "masked_after_ha": _hectares(evidence.unseen_cm2[:, 1]),
            "masked_after_share": _ratio(evidence.unseen_cm2[:, 1], evidence.region_cm2),
            "changed_ha": _hectares(changed),
            "forest_before_ha": _hectares(forest_before),
            "forest_after_ha": _hectares(forest_after),
            "loss_ha": _hectares(evidence.loss_cm2),
            "gain_ha": _hectares(evidence.gain_cm2),
            "net_change_ha": _hectares(evidence.gain_cm2 - evidence.loss_cm2),
            "loss_confirmed_ha": confirmed,
            "loss_unconfirmed_ha": unconfirmed,
            "deforestation_ha": _hectares(evidence.loss_cm2),
            "deforestation_share": _ratio(evidence.loss_cm2, forest_before),
            "mean_confidence_before": confidence[:, 0],
            "mean_confidence_after": confidence[:, 1],
        }
    )
