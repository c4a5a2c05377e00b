"""The scene's pixel size against the model card's: warn, refuse, or record the override.

A segmentation network learns its classes at one ground sampling distance: a
forest patch is so many pixels wide. Fed a scene at another pixel size it
still answers, with labels that are wrong and look plausible. The scene's
pixel size is measured on the ground (the side of a square with the ground
area of the grid's central pixel, :func:`geoseg.areas.pixel_size_m`), so a
geographic or Web Mercator grid is judged by what it covers, not by its map
units, and compared with the card's ``pixel_size_m``:

* within :data:`WARN_RATIO` (1.25x either way): fine; this absorbs projection
  scale (UTM at the zone edge, Web Mercator at 35 deg) and 20 m vs 30 m work;
* from :data:`WARN_RATIO` to :data:`REFUSE_RATIO` (2x): a warning;
* :data:`REFUSE_RATIO` or beyond (10 m Sentinel-2 for a 30 m Landsat model is
  3x, a 300 m product 10x): refused, unless the user passes
  ``--allow-pixel-size-mismatch``; the run then records the override.

Every run records the check (:meth:`PixelSizeCheck.record`) in its manifest.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

from geoseg.areas import pixel_size_m
from geoseg.errors import InputError
from geoseg.grid import RasterGrid

WARN_RATIO = 1.25
"""Beyond this ratio (scene / card, or card / scene) a warning is given."""
REFUSE_RATIO = 2.0
"""At or beyond this ratio the scene is refused without ``--allow-pixel-size-mismatch``."""

Verdict = Literal["ok", "warning", "refused", "overridden"]


class PixelSizeWarning(UserWarning):
    """A scene's pixel size is off the model card's, though not enough to refuse it."""


@dataclass(frozen=True)
class PixelSizeCheck:
    """A scene's ground pixel size against the model card's, and the verdict."""

    scene_m: float
    model_m: float
    verdict: Verdict

    @property
    def ratio(self) -> float:
        """How far apart the two sizes are: the larger over the smaller (>= 1)."""
        return max(self.scene_m, self.model_m) / min(self.scene_m, self.model_m)

    def record(self) -> dict[str, Any]:
        """The check as a run manifest records it."""
        return {
            "scene_pixel_size_m": round(self.scene_m, 3),
            "model_pixel_size_m": self.model_m,
            "pixel_size_ratio": round(self.ratio, 3),
            "pixel_size_check": self.verdict,
        }


def judge_pixel_size(scene_m: float, model_m: float, *, allow_mismatch: bool) -> PixelSizeCheck:
    """The verdict for a scene of ``scene_m`` metres and a model of ``model_m`` (pure).

    A mismatch of :data:`REFUSE_RATIO` or more is ``refused``, or
    ``overridden`` when ``allow_mismatch``.
    """
    ratio = max(scene_m, model_m) / min(scene_m, model_m)
    verdict: Verdict = "ok"
    if ratio >= REFUSE_RATIO:
        verdict = "overridden" if allow_mismatch else "refused"
    elif ratio > WARN_RATIO:
        verdict = "warning"
    return PixelSizeCheck(scene_m, model_m, verdict)


def check_pixel_size(
    label: str, grid: RasterGrid, model_m: float, *, allow_mismatch: bool
) -> PixelSizeCheck:
    """Measure ``grid``'s ground pixel size against the model's; warn or refuse.

    Parameters
    ----------
    label
        The scene's name for messages (a path).
    grid
        The scene's grid (any CRS).
    model_m
        The model card's pixel size in metres.
    allow_mismatch
        Run even at :data:`REFUSE_RATIO` or more (``--allow-pixel-size-mismatch``).

    Raises
    ------
    InputError
        The sizes are :data:`REFUSE_RATIO` or more apart and ``allow_mismatch``
        is False; the message says how to resample or override.
    """
    check = judge_pixel_size(pixel_size_m(grid), model_m, allow_mismatch=allow_mismatch)
    sizes = (
        f"{label}: pixels of {check.scene_m:.4g} m on the ground, the model expects "
        f"{model_m:.4g} m ({check.ratio:.2f}x"
    )
    if check.verdict == "refused":
        raise InputError(
            f"{sizes}, {REFUSE_RATIO:g}x or more is refused); resample the scene to "
            f"{model_m:.4g} m (e.g. gdalwarp -tr {model_m:g} {model_m:g} -r average), or pass "
            "--allow-pixel-size-mismatch to run it anyway"
        )
    if check.verdict != "ok":
        warnings.warn(
            f"{sizes}); labels may be wrong, resample the scene to {model_m:.4g} m",
            PixelSizeWarning,
            stacklevel=1,  # one registry: a run checking its grid twice warns once
        )
    return check
