"""Running a job's periods: claim, pick the scene pair, run change, publish, record.

One period of a job goes through :func:`execute_period`:

1. the scenes matching the job are listed, and :func:`~geoseg.jobs.history.choose_pair`
   picks the last processed scene and the newest one after it (none: "no new data");
2. the change runner writes into a staging folder beside the run's own folder,
   then the job adds the tagged polygons, the per-region table, the HTML report
   and a manifest, and the staging folder is renamed into place;
3. the cumulative GeoPackage (all polygons with their period, and the
   per-region time series) is rebuilt from every run folder and replaced atomically;
4. the run's row is closed in the state store.

Every output is a function of the scene pair, the model and the spec only, so
a run retried after its process died writes the same bytes an uninterrupted
run would have written. While a period runs, a thread refreshes its heartbeat.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from geoseg.errors import GeosegError, JobError
from geoseg.jobs.history import choose_pair
from geoseg.jobs.interfaces import JobBackend
from geoseg.jobs.outputs import (
    CUMULATIVE_FILE,
    is_published,
    produce_run_folder,
    rebuild_cumulative,
    run_folder,
)
from geoseg.jobs.schedule import Period, due_periods, next_tick
from geoseg.jobs.spec import JobSpec, as_utc
from geoseg.jobs.state import Claim, JobRecord, JobStore, RunStatus

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock, in UTC (the default :data:`Clock`)."""
    return datetime.now(UTC)


def worker_id() -> str:
    """An id for this process in the state store: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class RunSettings:
    """How runs are claimed and retried.

    Attributes
    ----------
    stale_after
        A running run whose heartbeat is older than this belongs to a dead
        process and is retried.
    max_attempts
        A period that failed this many times is no longer retried.
    """

    stale_after: timedelta = timedelta(minutes=10)
    max_attempts: int = 3

    @property
    def heartbeat_every(self) -> float:
        """Seconds between heartbeats: a quarter of the staleness limit."""
        return max(0.05, self.stale_after.total_seconds() / 4)


@dataclass(frozen=True)
class RunResult:
    """What happened to one period of a job."""

    job: str
    period_key: str
    run_id: int
    status: RunStatus
    message: str
    output_dir: Path | None = None


class _Heartbeat:
    """Refreshes a claim's heartbeat from a background thread while a period runs."""

    def __init__(self, store: JobStore, claim: Claim, clock: Clock, every: float) -> None:
        self._store, self._claim, self._clock, self._every = store, claim, clock, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="geoseg-heartbeat", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                if not self._store.beat(self._claim, self._clock()):
                    return
            except (sqlite3.Error, JobError):
                continue  # a busy or briefly unreachable database: try again next beat

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()


def _process(
    spec: JobSpec, store: JobStore, backend: JobBackend, claim: Claim, period: Period
) -> RunResult:
    model_hash = backend.runner.model_hash(spec.model)
    last = store.last_processed(spec.name)
    pair = choose_pair(
        backend.scenes.scenes(spec.area, spec.catalog),
        None if last is None else last.after_scene,
        None if last is None else last.after_datetime,
        period.end,
    )
    before, after = pair.before, pair.after
    store.record_pair(
        claim,
        spec.model,
        model_hash,
        None if before is None else (before.id, before.datetime),
        None if after is None else (after.id, after.datetime),
    )
    if after is None:
        since = "" if last is None or last.after_scene is None else f" after {last.after_scene}"
        return RunResult(spec.name, period.key, claim.run_id, "no_new_data", f"no new scene{since}")
    if before is None:
        return RunResult(
            spec.name, period.key, claim.run_id, "baseline", f"baseline scene {after.id}"
        )
    final = run_folder(spec, before, after, model_hash)
    if not is_published(final):
        produce_run_folder(spec, store, backend, claim.attempt, before, after, model_hash, final)
    rebuild_cumulative(spec, store, final)
    return RunResult(
        spec.name,
        period.key,
        claim.run_id,
        "succeeded",
        f"change {before.id} -> {after.id}",
        output_dir=final,
    )


def execute_period(
    record: JobRecord,
    store: JobStore,
    backend: JobBackend,
    claim: Claim,
    period: Period,
    clock: Clock,
    settings: RunSettings,
) -> RunResult:
    """Run one claimed period of a job and close its row (failures are recorded, not raised).

    An interruption (``KeyboardInterrupt``, ``SystemExit``) marks the run failed,
    so it is retried later, and is then raised again.
    """
    spec = record.spec
    try:
        with _Heartbeat(store, claim, clock, settings.heartbeat_every):
            result = _process(spec, store, backend, claim, period)
    except BaseException as error:
        if isinstance(error, GeosegError):
            message = str(error)
        else:
            message = "".join(traceback.format_exception_only(error)).strip() or repr(error)
        store.finish(claim, "failed", clock(), error=message)
        if not isinstance(error, Exception):
            raise
        return RunResult(spec.name, period.key, claim.run_id, "failed", message)
    outputs: tuple[str, ...] = ()
    if result.output_dir is not None:
        outputs = (
            *sorted(path.as_posix() for path in result.output_dir.rglob("*") if path.is_file()),
            (spec.output_dir / CUMULATIVE_FILE).as_posix(),
        )
    store.finish(
        claim,
        result.status,
        clock(),
        output_dir=None if result.output_dir is None else str(result.output_dir),
        outputs=outputs,
    )
    return result


def run_due_job(
    record: JobRecord,
    store: JobStore,
    backend: JobBackend,
    clock: Clock,
    settings: RunSettings,
    worker: str,
) -> list[RunResult]:
    """Run what is due for one job: retries of failed or dead runs first, then new periods.

    Stops at the first period it cannot claim (another process is running the job).
    """
    spec = record.spec
    results: list[RunResult] = []
    retries = store.retryable(spec.name, clock(), settings.stale_after, settings.max_attempts)
    pending = [Period(start=run.period_start, end=run.period_end) for run in retries]
    pending += due_periods(
        spec.schedule, record.anchor, store.last_scheduled_end(spec.name), clock(), spec.misfire
    )
    for period in pending:
        claim = store.claim(
            spec.name,
            period,
            "schedule",
            record.spec_hash,
            worker,
            clock(),
            settings.stale_after,
            settings.max_attempts,
        )
        if claim is None:
            break
        results.append(execute_period(record, store, backend, claim, period, clock, settings))
    return results


def run_due(
    store: JobStore,
    backend: JobBackend,
    clock: Clock = utc_now,
    settings: RunSettings | None = None,
    worker: str | None = None,
) -> list[RunResult]:
    """Run whatever is due for every job, then return (for cron, systemd timers, CronJobs)."""
    settings = settings or RunSettings()
    worker = worker or worker_id()
    results: list[RunResult] = []
    for record in store.jobs():
        results.extend(run_due_job(record, store, backend, clock, settings, worker))
    return results


def run_now(
    store: JobStore,
    name: str,
    backend: JobBackend,
    clock: Clock = utc_now,
    settings: RunSettings | None = None,
    worker: str | None = None,
) -> RunResult:
    """Run job ``name`` now, outside its schedule.

    Raises
    ------
    JobError
        When the job is running in another process.
    """
    settings = settings or RunSettings()
    record = store.job(name)
    now = clock()
    period = Period(start=as_utc(now), end=as_utc(now))
    claim = store.claim(
        name,
        period,
        "manual",
        record.spec_hash,
        worker or worker_id(),
        now,
        settings.stale_after,
        settings.max_attempts,
    )
    if claim is None:
        raise JobError(f"job {name!r} is running in another process; try again when it finishes")
    return execute_period(record, store, backend, claim, period, clock, settings)


def next_period_end(record: JobRecord, store: JobStore, now: datetime) -> datetime:
    """When the job's next period after ``now`` ends (its next scheduled run)."""
    last = store.last_scheduled_end(record.spec.name)
    start = max(as_utc(now), as_utc(last) if last is not None else record.anchor)
    return next_tick(record.spec.schedule, record.anchor, start)


def next_due(store: JobStore, now: datetime) -> datetime | None:
    """The earliest time any job's next period ends after ``now`` (None without jobs)."""
    times = [next_period_end(record, store, now) for record in store.jobs()]
    return min(times) if times else None
