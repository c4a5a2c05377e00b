"""Confident forest loss and gain, and what each date could not see, per region.

A class map says *forest* or *not forest* for every pixel, right or wrong; a
difference of two maps mixes real clearing with the errors of both dates. Loss
counted here is therefore stricter than a class transition:

* **Confident:** forest at BEFORE with a forest probability of at least
  ``min_probability``, and non-forest at AFTER with a non-forest probability of
  at least ``min_probability``. Probabilities are the per-class bands of
  ``geoseg predict --probabilities`` summed over the forest classes, in units of
  1/255 (:data:`PROBABILITY_UNITS`); a class map without probabilities (a
  reference map) counts as certain.
* **Patches of at least a minimum mapping unit:** the confident loss pixels are
  polygonized seam-free and patches smaller than ``min_loss_ha`` are dropped
  (done by the workflow; here a pixel's loss is given as a mask).

Gain is the same with the dates swapped; net change is gain minus loss. With
dates after AFTER, a loss is *confirmed* when the pixel's next valid
observation is non-forest too (:func:`confirmation`).

:class:`RegionEvidence` holds, per region, the additive integer counts behind
these numbers and the pixels each date could not see (nodata, clouds and
shadows masked by a quality band, user masks, codes a class map excludes), so
the final figures are identical for any chunking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from geoseg.errors import ConfigError
from geoseg.labels import LABEL_NODATA

if TYPE_CHECKING:
    from geoseg.change.classmap import ClassSpec

PROBABILITY_UNITS = 255
"""Probabilities are integers 0-255 (``round(p * 255)``), as ``geoseg predict`` writes them."""
DEFAULT_MIN_PROBABILITY = 0.6
"""Default confidence a loss needs at each date.

Chosen with ``benchmarks/deforestation_checks.py --sweep`` (forest-landsat, 2026-12-06): on
Zion with simulated clearings, false alarms away from the clearings fall from 3.51 ha at 0.5 to
0.09 ha at 0.6 and 0.00 ha at 0.7, while pixel recall of 1 ha clearings falls from 72% to 45%
and 13%; the three Slovenia no-change pairs stay at 0.00% of the forest at every value (the
minimum mapping unit removes the specks). 0.6 is the lowest value with false alarms below 1% of
the detected loss. Checked again with ``forest`` (pixelnet, 2026-12-06): on Zion false alarms
0.09 ha at 0.5 and none at 0.6, recall of 1 ha clearings 70% / 65% / 54% at 0.5 / 0.6 / 0.7;
the Slovenia no-change pairs at 0.00% from 0.6 on (0.68% of the forest at 0.5).
"""
DEFAULT_MIN_LOSS_HA = 0.5
"""Default minimum mapping unit of a loss or gain patch, in hectares."""


@dataclass(frozen=True)
class LossRule:
    """What counts as loss: confidence at each date and the smallest patch."""

    min_probability: float = DEFAULT_MIN_PROBABILITY
    min_loss_ha: float = DEFAULT_MIN_LOSS_HA

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_probability <= 1.0:
            raise ConfigError(
                f"--min-probability must be between 0 and 1, got {self.min_probability}"
            )
        if not self.min_loss_ha >= 0.0:
            raise ConfigError(f"--min-loss-ha must be 0 or more, got {self.min_loss_ha}")

    @property
    def probability_units(self) -> int:
        """The threshold in probability units (0-255), rounded up."""
        return int(np.ceil(self.min_probability * PROBABILITY_UNITS - 1e-9))


@dataclass(frozen=True)
class RegionEvidence:
    """Additive per-region counts beside :class:`geoseg.change.counts.ChangeCounts`.

    Attributes
    ----------
    region_cm2
        ``(regions,)``: ground area of the region's pixels on the common grid.
    unseen_cm2
        ``(regions, 2)``: area without a valid class at BEFORE / AFTER.
    loss_cm2, gain_cm2
        ``(regions,)``: area of confident loss / gain in kept patches.
    confirmed_cm2
        ``(regions,)``: area of that loss whose next valid later observation is
        non-forest too (:func:`confirmation`).
    confidence
        ``(regions, 2)``: sum over the pixels valid at that date of the
        confidence of their forest / non-forest call, in probability units.
    confidence_pixels
        ``(regions, 2)``: the number of those pixels.
    """

    region_cm2: NDArray[np.int64]
    unseen_cm2: NDArray[np.int64]
    loss_cm2: NDArray[np.int64]
    gain_cm2: NDArray[np.int64]
    confirmed_cm2: NDArray[np.int64]
    confidence: NDArray[np.int64]
    confidence_pixels: NDArray[np.int64]

    @classmethod
    def zeros(cls, regions: int) -> RegionEvidence:
        """Evidence of nothing."""

        def one() -> NDArray[np.int64]:
            return np.zeros(regions, np.int64)

        def two() -> NDArray[np.int64]:
            return np.zeros((regions, 2), np.int64)

        return cls(one(), two(), one(), one(), one(), two(), two())

    def __add__(self, other: RegionEvidence) -> RegionEvidence:
        return RegionEvidence(
            self.region_cm2 + other.region_cm2,
            self.unseen_cm2 + other.unseen_cm2,
            self.loss_cm2 + other.loss_cm2,
            self.gain_cm2 + other.gain_cm2,
            self.confirmed_cm2 + other.confirmed_cm2,
            self.confidence + other.confidence,
            self.confidence_pixels + other.confidence_pixels,
        )


def forest_lookup(classes: Sequence[ClassSpec]) -> NDArray[np.int8]:
    """``class id -> 1`` forest, ``0`` non-forest, ``-1`` unknown or excluded (256 entries)."""
    table = np.full(256, -1, dtype=np.int8)
    for spec in classes:
        table[spec.id] = 1 if spec.is_forest else 0
    table[LABEL_NODATA] = -1
    return table


def forest_probability(
    probabilities: NDArray[np.uint8] | None, forest_bands: Sequence[int], shape: tuple[int, int]
) -> NDArray[np.int16] | None:
    """Forest probability (0-255) from per-class bands ``(bands, rows, cols)``.

    ``forest_bands`` are 0-based band positions of the forest classes. ``None``
    (no probability raster) stays ``None``: the class map counts as certain.
    """
    if probabilities is None:
        return None
    if probabilities.shape[1:] != shape:
        raise ConfigError(
            f"the probability window {probabilities.shape[1:]} does not match the classes {shape}"
        )
    total = probabilities[list(forest_bands)].astype(np.int16).sum(axis=0, dtype=np.int16)
    clipped: NDArray[np.int16] = np.minimum(total, PROBABILITY_UNITS).astype(np.int16)
    return clipped


def _confidence(
    is_forest: NDArray[np.int8], forest_p: NDArray[np.int16] | None
) -> NDArray[np.int16]:
    """Probability of the pixel's own forest / non-forest call (255 without probabilities)."""
    if forest_p is None:
        return np.full(is_forest.shape, PROBABILITY_UNITS, dtype=np.int16)
    return np.where(is_forest == 1, forest_p, PROBABILITY_UNITS - forest_p).astype(np.int16)


def change_candidates(
    before: NDArray[np.uint8],
    after: NDArray[np.uint8],
    classes: Sequence[ClassSpec],
    before_forest_p: NDArray[np.int16] | None,
    after_forest_p: NDArray[np.int16] | None,
    rule: LossRule,
) -> NDArray[np.uint8]:
    """Per pixel: 1 confident loss, 2 confident gain, 0 neither, 255 unseen at either date.

    Confident loss is forest at BEFORE and non-forest at AFTER, each call with a
    probability of at least ``rule.min_probability``; gain the reverse.
    """
    lookup = forest_lookup(classes)
    forest_before, forest_after = lookup[before], lookup[after]
    sure_before = _confidence(forest_before, before_forest_p) >= rule.probability_units
    sure_after = _confidence(forest_after, after_forest_p) >= rule.probability_units
    sure = sure_before & sure_after
    loss = sure & (forest_before == 1) & (forest_after == 0)
    gain = sure & (forest_before == 0) & (forest_after == 1)
    out = np.zeros(before.shape, dtype=np.uint8)
    out[loss] = 1
    out[gain] = 2
    out[(forest_before < 0) | (forest_after < 0)] = LABEL_NODATA
    return out


def count_evidence(
    before: NDArray[np.uint8],
    after: NDArray[np.uint8],
    classes: Sequence[ClassSpec],
    pixel_areas: NDArray[np.int64],
    region_masks: Sequence[tuple[int, NDArray[np.bool_]]],
    regions: int,
    *,
    kept_change: NDArray[np.uint8],
    before_forest_p: NDArray[np.int16] | None,
    after_forest_p: NDArray[np.int16] | None,
    confirmed: NDArray[np.bool_] | None = None,
) -> RegionEvidence:
    """:class:`RegionEvidence` of one window.

    Parameters
    ----------
    before, after
        Class ids (uint8, 255 unseen).
    classes
        The classes with their forest flags.
    pixel_areas
        Ground area of each pixel in integer cm2 (broadcasts to the window).
    region_masks
        ``(region index, mask)`` of the regions touching the window.
    regions
        Total number of regions.
    kept_change
        1 loss, 2 gain, 0 neither, after the minimum mapping unit.
    before_forest_p, after_forest_p
        Forest probabilities (0-255), or None for certain class maps.
    confirmed
        Pixels whose loss a later date confirms (None: no later date).
    """
    evidence = RegionEvidence.zeros(regions)
    lookup = forest_lookup(classes)
    areas = np.broadcast_to(pixel_areas, before.shape)
    dates = []
    for ids, forest_p in ((before, before_forest_p), (after, after_forest_p)):
        is_forest = lookup[ids]
        dates.append((is_forest >= 0, _confidence(is_forest, forest_p)))
    loss, gain = kept_change == 1, kept_change == 2
    for region, mask in region_masks:
        evidence.region_cm2[region] += int(areas[mask].sum())
        evidence.loss_cm2[region] += int(areas[mask & loss].sum())
        evidence.gain_cm2[region] += int(areas[mask & gain].sum())
        if confirmed is not None:
            evidence.confirmed_cm2[region] += int(areas[mask & loss & confirmed].sum())
        for date, (seen, confidence) in enumerate(dates):
            evidence.unseen_cm2[region, date] += int(areas[mask & ~seen].sum())
            evidence.confidence[region, date] += int(confidence[mask & seen].sum(dtype=np.int64))
            evidence.confidence_pixels[region, date] += int(np.count_nonzero(mask & seen))
    return evidence


def confirmation(
    later: Sequence[NDArray[np.uint8]], classes: Sequence[ClassSpec]
) -> NDArray[np.int8]:
    """Per pixel, its next valid observation after AFTER: 1 non-forest, 0 forest, -1 none.

    A loss is *confirmed* when that observation is non-forest too (1), as
    operational alert systems do to keep one-off false alarms out; a pixel seen
    as forest again (0), or never seen again (-1), leaves its loss unconfirmed.

    Parameters
    ----------
    later
        Class ids of the dates after AFTER, in time order (255 unseen).
    classes
        The classes with their forest flags.
    """
    lookup = forest_lookup(classes)
    out = np.full(later[0].shape, -1, dtype=np.int8) if later else np.zeros((0, 0), np.int8)
    for ids in later:
        is_forest = lookup[ids]
        undecided = out == -1
        out[undecided & (is_forest == 0)] = 1
        out[undecided & (is_forest == 1)] = 0
    return out


@dataclass(frozen=True)
class PatchStatus:
    """Additive per-patch areas (sparse): how much of each loss patch later dates confirm."""

    indexes: NDArray[np.int64]
    confirmed_cm2: NDArray[np.int64]
    area_cm2: NDArray[np.int64]

    @classmethod
    def empty(cls) -> PatchStatus:
        """No patch."""
        return cls(*(np.zeros(0, np.int64) for _ in range(3)))

    @classmethod
    def of_window(
        cls,
        patch_ids: NDArray[np.int64],
        confirmed: NDArray[np.bool_],
        pixel_areas: NDArray[np.int64],
    ) -> PatchStatus:
        """Areas of the patches in one window; ``patch_ids`` is -1 outside every patch."""
        inside = patch_ids >= 0
        areas = np.broadcast_to(pixel_areas, patch_ids.shape)[inside]
        indexes, position = np.unique(patch_ids[inside], return_inverse=True)
        total = np.zeros(len(indexes), np.int64)
        sure = np.zeros(len(indexes), np.int64)
        np.add.at(total, position, areas)
        np.add.at(sure, position, np.where(confirmed[inside], areas, 0))
        return cls(indexes.astype(np.int64), sure, total)

    def __add__(self, other: PatchStatus) -> PatchStatus:
        return PatchStatus(
            np.concatenate([self.indexes, other.indexes]),
            np.concatenate([self.confirmed_cm2, other.confirmed_cm2]),
            np.concatenate([self.area_cm2, other.area_cm2]),
        )

    def confirmed_share(self, patches: int) -> NDArray[np.float64]:
        """Share of each of ``patches`` patches' area that is confirmed (NaN if none counted)."""
        sure = np.bincount(self.indexes, weights=self.confirmed_cm2, minlength=patches)
        total = np.bincount(self.indexes, weights=self.area_cm2, minlength=patches)
        share = np.full(patches, np.nan)
        np.divide(sure, total, out=share, where=total > 0)
        return share
