from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from geoseg.errors import JobError
from geoseg.jobs.schedule import MAX_PERIODS, Period, due_periods, next_tick
from geoseg.jobs.spec import ScheduleSpec

DAILY_6 = ScheduleSpec(cron="0 6 * * *")
ANCHOR = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def test_cron_ticks_in_utc() -> None:
    assert next_tick(DAILY_6, ANCHOR, at(1)) == at(1, 6)
    assert next_tick(DAILY_6, ANCHOR, at(1, 6)) == at(2, 6)
    weekly = ScheduleSpec(cron="30 2 * * MON")  # 2026-03-02 is a Monday
    assert next_tick(weekly, ANCHOR, at(1)) == at(2, 2, 30)
    assert next_tick(weekly, ANCHOR, at(2, 2, 30)) == at(9, 2, 30)


def test_nothing_due_before_first_tick() -> None:
    assert due_periods(DAILY_6, ANCHOR, None, at(1, 5, 59), "each") == []
    assert due_periods(DAILY_6, ANCHOR, None, at(1, 5, 59), "once") == []


def test_each_policy_gives_one_period_per_missed_tick() -> None:
    periods = due_periods(DAILY_6, ANCHOR, None, at(4, 7), "each")
    assert periods == [
        Period(ANCHOR, at(1, 6)),
        Period(at(1, 6), at(2, 6)),
        Period(at(2, 6), at(3, 6)),
        Period(at(3, 6), at(4, 6)),
    ]
    assert periods[0].key == "2026-03-01T06:00:00Z"


def test_once_policy_folds_missed_ticks_into_one_period() -> None:
    periods = due_periods(DAILY_6, ANCHOR, None, at(4, 7), "once")
    assert periods == [Period(ANCHOR, at(4, 6), missed=4)]


def test_last_end_excludes_periods_already_taken() -> None:
    assert due_periods(DAILY_6, ANCHOR, at(3, 6), at(4, 7), "each") == [Period(at(3, 6), at(4, 6))]
    assert due_periods(DAILY_6, ANCHOR, at(4, 6), at(4, 7), "each") == []
    assert due_periods(DAILY_6, ANCHOR, at(4, 6), at(4, 7), "once") == []
    # exactly at the tick, the tick is due
    assert due_periods(DAILY_6, ANCHOR, at(4, 6), at(5, 6), "once") == [Period(at(4, 6), at(5, 6))]


def test_interval_counts_from_anchor() -> None:
    every_6h = ScheduleSpec(interval=timedelta(hours=6))
    anchor = at(1, 1)
    assert next_tick(every_6h, anchor, at(1)) == at(1, 7)
    assert next_tick(every_6h, anchor, at(1, 7)) == at(1, 13)
    periods = due_periods(every_6h, anchor, None, at(2, 2), "each")
    assert [period.end for period in periods] == [at(1, 7), at(1, 13), at(1, 19), at(2, 1)]
    assert due_periods(every_6h, anchor, None, at(2, 2), "once") == [
        Period(anchor, at(2, 1), missed=4)
    ]


def test_each_policy_refuses_runaway_backfills() -> None:
    every_minute = ScheduleSpec(cron="* * * * *")
    late = ANCHOR + timedelta(minutes=MAX_PERIODS + 5)
    with pytest.raises(JobError, match="misfire: once"):
        due_periods(every_minute, ANCHOR, None, late, "each")
    assert due_periods(every_minute, ANCHOR, None, late, "once")[0].missed == MAX_PERIODS


def test_naive_times_are_utc() -> None:
    naive = datetime(2026, 3, 4, 7)
    assert due_periods(DAILY_6, ANCHOR, at(3, 6), naive, "each") == [Period(at(3, 6), at(4, 6))]
