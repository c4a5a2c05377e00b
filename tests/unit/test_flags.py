"""Quality flags fire where a comparison cannot be trusted and stay quiet otherwise."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from geoseg.change.flags import (
    FlagRule,
    day_of_year_gap,
    region_flags,
    season_flags,
    with_flag_column,
)
from geoseg.errors import ConfigError

CLEAN = {
    "region_id": "clean",
    "masked_before_share": 0.01,
    "masked_after_share": 0.0,
    "mean_confidence_before": 0.93,
    "mean_confidence_after": 0.91,
    "loss_ha": 40.0,
    "gain_ha": 3.0,
}


def codes(**changes: object) -> list[str]:
    row = {**CLEAN, **changes}
    flags = region_flags(pd.DataFrame([row]), FlagRule())
    return [flag.code for flag in flags[0]]


def test_a_clean_region_has_no_flag() -> None:
    assert codes() == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"masked_before_share": 0.35}, ["masked_before"]),
        ({"masked_after_share": 0.21}, ["masked_after"]),
        ({"mean_confidence_after": 0.6}, ["low_confidence_after"]),
        ({"gain_ha": 25.0}, ["gain_near_loss"]),
        ({"gain_ha": 0.4, "loss_ha": 0.5}, []),  # too little loss for a ratio
        ({"masked_before_share": np.nan, "mean_confidence_before": np.nan}, []),  # empty region
    ],
)
def test_each_region_flag_fires_alone(changes: dict[str, object], expected: list[str]) -> None:
    assert codes(**changes) == expected


def test_season_flag_wraps_around_the_year() -> None:
    assert day_of_year_gap(date(1999, 11, 18), date(2002, 4, 16)) == strict_gap()
    assert day_of_year_gap(date(2015, 12, 20), date(2016, 1, 10)) == 21
    rule = FlagRule()
    assert [f.code for f in season_flags(date(1999, 11, 18), date(2002, 4, 16), rule)] == ["season"]
    assert season_flags(date(2015, 7, 11), date(2015, 8, 30), rule)[0].code == "season"
    assert season_flags(date(2015, 8, 30), date(2015, 9, 9), rule) == []
    assert [f.code for f in season_flags(None, date(2015, 9, 9), rule)] == ["dates_unknown"]


def strict_gap() -> int:
    # 18 Nov 1999 is day 322, 16 Apr 2002 day 106: 216 days one way, 149 the other
    return 149


def test_flag_column_and_rule_validation() -> None:
    frame = pd.DataFrame([CLEAN, {**CLEAN, "region_id": "cloudy", "masked_after_share": 0.5}])
    flagged = with_flag_column(frame, region_flags(frame, FlagRule()))
    assert flagged["flags"].tolist() == ["", "masked_after"]
    with pytest.raises(ConfigError, match="max_masked_share"):
        FlagRule(max_masked_share=2.0)
