"""Is a scene inside what the model was trained on? Band values, pixel size, sensor.

A model card may record its :class:`~geoseg.models.card.TrainingDomain`: per
band the distribution of the *scaled* inputs the model saw in training (1st,
50th and 99th percentiles, mean, standard deviation), the ground pixel sizes
and the sensor families of the training scenes. :func:`compare_domain` checks a
scene's scaled sample values, ground pixel size and sensor against it and
returns :class:`DomainFinding` values, which ``geoseg predict``, ``run`` and
``run-change`` print as warnings and record (manifest, output tags, change
flags ``out_of_range``).

Everything here is pure: values come in as arrays (the scene's sample windows,
the same fixed lattice as the ``scene_percentile`` statistics:
:func:`geoseg.predict.preprocess.sample_windows`), findings go out as values.
The thresholds (:class:`DomainRule`) and why they are where they are are
documented there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from geoseg.areas import pixel_areas_m2
from geoseg.errors import ConfigError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.models.card import BandDistribution, InputScaling, TrainingDomain
from geoseg.predict.preprocess import PhysicalValues, SceneStatistics, normalize

DomainCode = Literal["band_values", "pixel_size", "sensor"]

_LANDSAT = re.compile(r"landsat[\s_-]*0?(\d)|\bl[cetom]0?([4-9])\b")
_SENTINEL2 = re.compile(r"sentinel[\s_-]*2|\bs2[ab]?\b|\bmsi\b")


@dataclass(frozen=True)
class DomainRule:
    """How far outside the training domain a scene must lie to be reported.

    Band values (the model's inputs, after the card's scaling), per band, with
    ``[p1, p99]`` the training 1-99% range:

    * the scene's median lies outside ``[p1, p99]``, or
    * more than ``max_outside_share`` (0.5) of the scene's valid sample pixels
      lie outside ``[p1, p99]``.

    By construction 2% of the training pixels lie outside their own range, so
    a scene from the training distribution has its median well inside and a
    small share outside. Measured on the real data with the shipped
    ``forest-landsat`` card (``scene_percentile`` scaling, which makes the
    inputs independent of linear units by design): the training scenes (Zion
    whole scene, both Chiapas stacks) and the seven scenes of ``sites/`` have
    every median inside and at most 3.6% of their pixels outside, whatever
    their units. With a ``standardize`` card fitted to Zion as TOA reflectance
    (DN x 2e-5 - 0.1): Zion itself has 2.9-3.2% outside; Zion read as raw DN
    without that scale, and Sentinel-2 or Landsat reflectance x 10000 read
    without their scale, have 100% outside (inputs of 1e3-1e5 against a range
    of about -3 to 2.5); Sentinel-2 TOA reflectance (Slovenia) at most 27%
    (quiet); surface-reflectance scenes fire on the blue band (70-94%
    outside: atmospheric correction darkens blue, a shift the model never
    saw). A share above one half means that most of the scene reaches the
    model as values it never saw, far beyond what another landscape gives; a
    median outside catches a shift of the whole band even when it is narrow.

    Pixel size: the scene's ground pixel size differs from every training
    pixel size by more than a factor ``max_pixel_size_ratio`` (1.5). A
    convolutional network learns textures and object sizes in pixels; at
    10 m (Sentinel-2) a 30 m model sees fields and tree crowns three times as
    large as in training. 1.5 lets the usual resampled products through
    (25-45 m for a 30 m model) and stops 10, 15 or 60 m.

    Sensor: a sensor family the model never saw (when the scene's sensor is
    known and the card records sensors): band passes and radiometry differ.
    """

    max_outside_share: float = 0.5
    max_pixel_size_ratio: float = 1.5

    def __post_init__(self) -> None:
        if not 0.0 < self.max_outside_share < 1.0:
            raise ConfigError(
                f"max_outside_share must be between 0 and 1, got {self.max_outside_share}"
            )
        if self.max_pixel_size_ratio <= 1.0:
            raise ConfigError(f"max_pixel_size_ratio must be > 1, got {self.max_pixel_size_ratio}")


@dataclass(frozen=True)
class DomainFinding:
    """One way a scene lies outside the training domain."""

    code: DomainCode
    band: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready data (manifests, tags)."""
        return {"code": self.code, "band": self.band, "message": self.message}


def sensor_family(text: str) -> str:
    """The sensor family a free-text sensor name means: ``'landsat-7'``, ``'sentinel-2'``...

    ``'Landsat-7 ETM+ (LEDAPS surface reflectance)'`` -> ``'landsat-7'``,
    ``'Sentinel-2A MSI L1C'`` -> ``'sentinel-2'``, ``'LC08'`` -> ``'landsat-8'``;
    other text is returned lower-cased and stripped, and ``''`` means unknown.
    """
    lowered = text.strip().lower()
    if not lowered:
        return ""
    if _SENTINEL2.search(lowered):
        return "sentinel-2"
    match = _LANDSAT.search(lowered)
    if match:
        return f"landsat-{match.group(1) or match.group(2)}"
    return lowered


def ground_pixel_size_m(grid: RasterGrid) -> float:
    """The ground pixel size (m): the square root of the mean ground pixel area near the centre.

    Ground areas (:func:`geoseg.areas.pixel_areas_m2`) make a degree-based grid
    and a projection's scale distortion count the way the model sees them.
    """
    height, width = min(grid.height, 32), min(grid.width, 32)
    window = PixelWindow((grid.height - height) // 2, (grid.width - width) // 2, height, width)
    return float(np.sqrt(np.mean(pixel_areas_m2(grid, window))))


def scaled_sample_values(
    samples: Sequence[tuple[PhysicalValues, NDArray[np.bool_]]],
    scaling: InputScaling,
    statistics: SceneStatistics | None,
) -> NDArray[np.float32]:
    """The model inputs ``(bands, N)`` of the valid pixels of ``samples``.

    Each sample is ``(values (bands, h, w) in physical units, valid (h, w))``
    with the model's bands in model order, scaled exactly as the forward pass
    scales them (:func:`geoseg.predict.preprocess.normalize`).
    """
    parts = [
        normalize(values, valid, scaling, statistics)[:, valid]
        for values, valid in samples
        if valid.any()
    ]
    if not parts:
        return np.empty((len(samples[0][0]) if samples else 0, 0), dtype=np.float32)
    return np.concatenate(parts, axis=1)


def weighted_quantiles(
    values: NDArray[np.floating[Any]], weights: NDArray[np.float64], quantiles: Sequence[float]
) -> list[float]:
    """Quantiles (0-1) of ``values`` where each value counts with its weight.

    The ``q`` quantile is the smallest value whose cumulative weight reaches
    ``q`` of the total (the inverted-CDF definition; with equal weights it is
    numpy's ``method='inverted_cdf'``).
    """
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    total = cumulative[-1]
    positions = [
        min(int(np.searchsorted(cumulative, q * total, side="left")), len(order) - 1)
        for q in quantiles
    ]
    return [float(values[order[position]]) for position in positions]


def band_distributions(
    names: Sequence[str], values: NDArray[np.float32], weights: NDArray[np.float64]
) -> list[BandDistribution]:
    """Per band of ``values`` ``(bands, N)``, the weighted 1/50/99% percentiles, mean and std."""
    total = float(weights.sum())
    distributions = []
    for name, band in zip(names, values, strict=True):
        p1, p50, p99 = weighted_quantiles(band, weights, (0.01, 0.5, 0.99))
        mean = float(np.dot(weights, band.astype(np.float64)) / total)
        variance = float(np.dot(weights, (band.astype(np.float64) - mean) ** 2) / total)
        distributions.append(
            BandDistribution(
                name=name,
                p1=round(p1, 5),
                p50=round(p50, 5),
                p99=round(p99, 5),
                mean=round(mean, 5),
                std=round(float(np.sqrt(variance)), 5),
            )
        )
    return distributions


def compare_domain(
    domain: TrainingDomain,
    values: NDArray[np.float32],
    *,
    pixel_size_m: float,
    sensor: str = "",
    rule: DomainRule | None = None,
) -> tuple[DomainFinding, ...]:
    """The ways a scene lies far outside the training ``domain`` (empty when it does not).

    Parameters
    ----------
    domain
        The card's record.
    values
        The scene's scaled sample values ``(bands, N)`` in card band order
        (:func:`scaled_sample_values`).
    pixel_size_m
        The scene's ground pixel size (:func:`ground_pixel_size_m`).
    sensor
        The scene's sensor as free text (``''``: unknown, not checked).
    rule
        The thresholds (default :class:`DomainRule`, which explains them).
    """
    rule = rule or DomainRule()
    findings: list[DomainFinding] = []
    if values.shape[1]:
        for band, trained in zip(values, domain.bands, strict=True):
            median = float(np.median(band))
            outside = float(np.mean((band < trained.p1) | (band > trained.p99)))
            if trained.p1 <= median <= trained.p99 and outside <= rule.max_outside_share:
                continue
            where = f"the training 1-99% range {trained.p1:.4g} to {trained.p99:.4g}"
            if trained.p1 <= median <= trained.p99:
                what = f"{100 * outside:.0f}% of the scene's model inputs lie outside {where}"
            else:
                what = (
                    f"the scene's median model input {median:.4g} lies outside {where} "
                    f"({100 * outside:.0f}% of its pixels outside)"
                )
            findings.append(
                DomainFinding(
                    "band_values",
                    trained.name,
                    f"band {trained.name}: {what}; check the scene's units and scale/offset "
                    "against the model card's scaling",
                )
            )
    ratio = min(max(pixel_size_m / size, size / pixel_size_m) for size in domain.pixel_sizes_m)
    if ratio > rule.max_pixel_size_ratio:
        trained_sizes = ", ".join(f"{size:g}" for size in domain.pixel_sizes_m)
        findings.append(
            DomainFinding(
                "pixel_size",
                None,
                f"the scene's pixel size {pixel_size_m:.3g} m is {ratio:.2g} times away from the "
                f"training pixel sizes ({trained_sizes} m); resample the scene or expect "
                "poorer results",
            )
        )
    family = sensor_family(sensor)
    if family and domain.sensors and family not in domain.sensors:
        findings.append(
            DomainFinding(
                "sensor",
                None,
                f"the scene's sensor {family} ({sensor}) is not among the training sensors "
                f"({', '.join(domain.sensors)})",
            )
        )
    return tuple(findings)
