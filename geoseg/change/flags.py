"""Quality flags: when a comparison of two dates cannot be trusted, say so.

Each flag is a short code with a sentence; a region's row carries the codes of
the flags that fire for it, and the run carries those that fire for the whole
comparison. The rules and their limits (:class:`FlagRule`):

* ``masked_before`` / ``masked_after``: more than ``max_masked_share`` of the
  region has no valid class at that date (clouds, shadows, nodata, masks).
* ``season``: the dates are more than ``max_season_days`` apart in day of year
  (circular), so phenology can look like clearing or regrowth.
* ``gain_near_loss``: gross gain is at least ``max_gain_to_loss`` of gross loss
  (and loss is at least ``min_loss_for_ratio_ha``): real clearing rarely comes
  with as much regrowth, noise and season do.
* ``low_confidence``: the model's mean confidence at a date is below
  ``min_mean_confidence``.
* ``out_of_range`` (run level): a scene's band statistics lie outside what the
  model was trained on (given by the caller).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd

from geoseg.errors import ConfigError


@dataclass(frozen=True)
class FlagRule:
    """Limits beyond which a comparison is flagged."""

    max_masked_share: float = 0.2
    max_season_days: int = 45
    max_gain_to_loss: float = 0.5
    min_loss_for_ratio_ha: float = 1.0
    min_mean_confidence: float = 0.75

    def __post_init__(self) -> None:
        for name in ("max_masked_share", "max_gain_to_loss", "min_mean_confidence"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"flag limit {name} must be between 0 and 1, got {value}")
        if not 0 <= self.max_season_days <= 183:
            raise ConfigError(
                f"flag limit max_season_days must be 0-183, got {self.max_season_days}"
            )


@dataclass(frozen=True)
class Flag:
    """One flag: a code, where it applies (``run`` or a region id) and a sentence."""

    code: str
    where: str
    message: str


def day_of_year_gap(first: date | datetime, second: date | datetime) -> int:
    """Days between the two dates' days of year, the short way round the year (0-183)."""
    gap = abs(first.timetuple().tm_yday - second.timetuple().tm_yday)
    return min(gap, 365 - gap)


def season_flags(
    before: date | datetime | None, after: date | datetime | None, rule: FlagRule
) -> list[Flag]:
    """The run-level ``season`` flag, or a note that the dates are unknown."""
    if before is None or after is None:
        return [
            Flag(
                "dates_unknown",
                "run",
                "the acquisition dates are unknown, so seasonal differences cannot be "
                "checked; give --before-date and --after-date",
            )
        ]
    gap = day_of_year_gap(before, after)
    if gap <= rule.max_season_days:
        return []
    return [
        Flag(
            "season",
            "run",
            f"the dates {before:%Y-%m-%d} and {after:%Y-%m-%d} are {gap} days apart in the "
            f"year (more than {rule.max_season_days}): seasonal change can look like loss or "
            "gain; compare scenes from the same season",
        )
    ]


def region_flags(regions: pd.DataFrame, rule: FlagRule) -> list[list[Flag]]:
    """For each row of a regions table (:func:`geoseg.change.counts.finalize`), its flags."""
    result: list[list[Flag]] = []
    for row in regions.to_dict("records"):
        where = str(row["region_id"])
        flags = []
        for date_name in ("before", "after"):
            share = float(row[f"masked_{date_name}_share"])
            if np.isfinite(share) and share > rule.max_masked_share:
                flags.append(
                    Flag(
                        f"masked_{date_name}",
                        where,
                        f"{share:.0%} of the region is masked or without data at "
                        f"{date_name.upper()} (more than {rule.max_masked_share:.0%})",
                    )
                )
            confidence = float(row[f"mean_confidence_{date_name}"])
            if np.isfinite(confidence) and confidence < rule.min_mean_confidence:
                flags.append(
                    Flag(
                        f"low_confidence_{date_name}",
                        where,
                        f"the model's mean confidence at {date_name.upper()} is "
                        f"{confidence:.2f} (below {rule.min_mean_confidence:.2f})",
                    )
                )
        loss, gain = float(row["loss_ha"]), float(row["gain_ha"])
        if loss >= rule.min_loss_for_ratio_ha and gain >= rule.max_gain_to_loss * loss:
            flags.append(
                Flag(
                    "gain_near_loss",
                    where,
                    f"gain ({gain:.1f} ha) is {gain / loss:.0%} of loss ({loss:.1f} ha): "
                    "noise or season rather than clearing is likely",
                )
            )
        result.append(flags)
    return result


def with_flag_column(regions: pd.DataFrame, flags: Sequence[Sequence[Flag]]) -> pd.DataFrame:
    """``regions`` with a ``flags`` column: the codes of each row's flags, comma-separated."""
    flagged = regions.copy()
    flagged["flags"] = [",".join(flag.code for flag in row) for row in flags]
    return flagged
