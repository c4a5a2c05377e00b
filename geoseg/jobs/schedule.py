"""Which periods of a job's schedule are due: pure functions of a clock passed in.

A schedule (a cron expression in UTC, or an interval from an anchor) fires at
*ticks*. The period of a tick runs from the previous tick (exclusive) to the
tick itself (inclusive). Given the end of the last period already taken and
the time now, :func:`due_periods` returns the periods to run under a misfire
policy: ``"each"`` gives one period per missed tick, ``"once"`` folds all
missed ticks into one period that ends at the latest of them. Nothing here
reads a clock or sleeps; callers pass ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from croniter import croniter

from geoseg.errors import JobError
from geoseg.jobs.spec import ScheduleSpec, as_utc

MAX_PERIODS = 1_000
"""At most this many missed periods are returned by the ``"each"`` policy at once."""


@dataclass(frozen=True, slots=True)
class Period:
    """A scheduled period ``(start, end]`` in UTC; ``missed`` ticks were folded into it."""

    start: datetime
    end: datetime
    missed: int = 1

    @property
    def key(self) -> str:
        """The period's identity in the state store: its end as ISO 8601 UTC."""
        return self.end.strftime("%Y-%m-%dT%H:%M:%SZ")


def next_tick(schedule: ScheduleSpec, anchor: datetime, after: datetime) -> datetime:
    """The first tick strictly after ``after``.

    Parameters
    ----------
    schedule
        The job's schedule.
    anchor
        Where an interval schedule starts counting (ticks at ``anchor + k * interval``,
        ``k >= 1``); cron schedules ignore it.
    after
        The time to look from.
    """
    anchor, after = as_utc(anchor), as_utc(after)
    if schedule.interval is not None:
        step = schedule.interval
        if after < anchor + step:
            return anchor + step
        count = (after - anchor) // step
        return anchor + step * (count + 1)
    if schedule.cron is None:
        raise JobError("a schedule needs 'cron' or 'interval'")
    tick: datetime = croniter(schedule.cron, after).get_next(datetime)
    return as_utc(tick)


def last_tick_until(schedule: ScheduleSpec, anchor: datetime, now: datetime) -> datetime | None:
    """The latest tick at or before ``now`` that is after ``anchor`` (None if there is none)."""
    anchor, now = as_utc(anchor), as_utc(now)
    if schedule.interval is not None:
        step = schedule.interval
        count = (now - anchor) // step
        return anchor + step * count if count >= 1 else None
    if schedule.cron is None:
        raise JobError("a schedule needs 'cron' or 'interval'")
    tick = as_utc(croniter(schedule.cron, now + timedelta(seconds=1)).get_prev(datetime))
    return tick if tick > anchor else None


def due_periods(
    schedule: ScheduleSpec,
    anchor: datetime,
    last_end: datetime | None,
    now: datetime,
    misfire: Literal["once", "each"],
) -> list[Period]:
    """The periods due at ``now``, oldest first.

    Parameters
    ----------
    schedule
        The job's schedule.
    anchor
        When the schedule starts: ``schedule.start`` or the time the job was added.
    last_end
        End of the last period already taken (run, running or failed), or None.
    now
        The current time (UTC); the caller's clock.
    misfire
        ``"each"``: one period per tick since ``last_end``; ``"once"``: one period
        ending at the latest tick, covering all missed ones.

    Returns
    -------
    list[Period]
        Empty when nothing is due.
    """
    start = as_utc(last_end) if last_end is not None else as_utc(anchor)
    now = as_utc(now)
    first = next_tick(schedule, anchor, start)
    if first > now:
        return []
    if misfire == "once":
        last = last_tick_until(schedule, anchor, now)
        if last is None or last < first:
            raise JobError(f"schedule {schedule} gave inconsistent ticks around {now}")
        return [Period(start=start, end=last, missed=count_ticks(schedule, anchor, start, last))]
    periods: list[Period] = []
    tick = first
    while tick <= now:
        if len(periods) >= MAX_PERIODS:
            raise JobError(
                f"more than {MAX_PERIODS} missed periods since {start:%Y-%m-%d %H:%M}Z; "
                "use 'misfire: once' or a later 'schedule.start'"
            )
        periods.append(Period(start=start, end=tick))
        start, tick = tick, next_tick(schedule, anchor, tick)
    return periods


def count_ticks(schedule: ScheduleSpec, anchor: datetime, start: datetime, end: datetime) -> int:
    """How many ticks fall in ``(start, end]`` (capped at :data:`MAX_PERIODS`)."""
    if schedule.interval is not None:
        step = schedule.interval
        first_index = (as_utc(start) - as_utc(anchor)) // step + 1
        last_index = (as_utc(end) - as_utc(anchor)) // step
        return max(0, min(MAX_PERIODS, last_index - first_index + 1))
    count = 0
    tick = next_tick(schedule, anchor, start)
    while tick <= as_utc(end) and count < MAX_PERIODS:
        count += 1
        tick = next_tick(schedule, anchor, tick)
    return count
