"""``geoseg jobs``: define scheduled change-detection jobs, run them, read their history."""

from __future__ import annotations

import os
import signal
import threading
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from geoseg.jobs import BACKEND_ENV_VAR

if TYPE_CHECKING:
    from geoseg.jobs.interfaces import JobBackend
    from geoseg.jobs.runner import Clock, RunResult, RunSettings
    from geoseg.jobs.state import JobStore


def _store(context: click.Context) -> JobStore:
    from geoseg.jobs.state import JobStore, default_db_path

    path: Path | None = context.obj
    return JobStore(path if path is not None else default_db_path())


def _clock(now: datetime | None) -> Clock:
    from geoseg.jobs.runner import utc_now
    from geoseg.jobs.spec import as_utc

    if now is None:
        return utc_now
    frozen = as_utc(now)
    return lambda: frozen


def _settings(stale_after: float, max_attempts: int) -> RunSettings:
    from geoseg.jobs.runner import RunSettings

    return RunSettings(stale_after=timedelta(seconds=stale_after), max_attempts=max_attempts)


def _echo_result(result: RunResult) -> None:
    where = f" -> {result.output_dir}" if result.output_dir is not None else ""
    click.echo(f"{result.job} [{result.period_key}] {result.status}: {result.message}{where}")


def _backend(target: str | None) -> JobBackend:
    """The backend ``target`` names, else the real one (:func:`workflows.jobs.default_backend`)."""
    from geoseg.jobs import load_backend

    if target is None:
        from workflows.jobs import default_backend

        return default_backend()
    return load_backend(target)


_backend_option = click.option(
    "--backend",
    envvar=BACKEND_ENV_VAR,
    default=None,
    show_default="workflows.jobs:default_backend",
    help="module:function building the scene source and change runner.",
)
_now_option = click.option(
    "--now",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d"]),
    default=None,
    hidden=True,
    help="Pretend the time is this (UTC); for tests and backfills.",
)
_stale_option = click.option(
    "--stale-after",
    type=click.FloatRange(min=0.1),
    default=600.0,
    show_default=True,
    help="Seconds without heartbeat after which a running run counts as dead and is retried.",
)
_attempts_option = click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="A period that failed this many times is not retried again.",
)


@click.group()
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="State database (default: $GEOSEG_JOBS_DB or ~/.local/share/geoseg/jobs.sqlite).",
)
@click.pass_context
def jobs(context: click.Context, db: Path | None) -> None:
    """Scheduled, incremental change-detection jobs."""
    context.obj = db


@jobs.command()
@click.argument("spec_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
def add(context: click.Context, spec_file: Path) -> None:
    """Add the job described by SPEC_FILE (YAML), or update the job of the same name."""
    from geoseg.jobs.runner import next_period_end, utc_now
    from geoseg.jobs.schedule import due_periods
    from geoseg.jobs.spec import load_job_spec

    spec = load_job_spec(spec_file)
    store = _store(context)
    created = store.add_job(spec, utc_now())
    record = store.job(spec.name)
    now = utc_now()
    due = due_periods(
        spec.schedule, record.anchor, store.last_scheduled_end(spec.name), now, spec.misfire
    )
    verb = "added" if created else "updated"
    click.echo(f"{verb} job {spec.name} (spec sha256 {record.spec_hash[:12]}) in {store.path}")
    click.echo(
        f"periods due now: {len(due)}; next run at "
        f"{next_period_end(record, store, now):%Y-%m-%d %H:%M}Z"
    )


@jobs.command(name="list")
@click.pass_context
def list_jobs(context: click.Context) -> None:
    """List the jobs with their schedule, last run and periods due now."""
    from geoseg.jobs.runner import next_period_end, utc_now
    from geoseg.jobs.schedule import due_periods

    store = _store(context)
    records = store.jobs()
    if not records:
        click.echo(f"no jobs in {store.path}; add one with 'geoseg jobs add SPEC.yaml'")
        return
    now = utc_now()
    for record in records:
        spec = record.spec
        schedule = (
            f"cron '{spec.schedule.cron}'"
            if spec.schedule.cron
            else (f"every {spec.schedule.interval}")
        )
        runs = store.runs(spec.name)
        last = f"{runs[-1].status} ({runs[-1].period_key})" if runs else "never run"
        due = due_periods(
            spec.schedule, record.anchor, store.last_scheduled_end(spec.name), now, spec.misfire
        )
        upcoming = next_period_end(record, store, now)
        click.echo(
            f"{spec.name}: {schedule} UTC, misfire {spec.misfire}, model {spec.model}, "
            f"out {spec.output_dir}; last: {last}; due now: {len(due)}; "
            f"next: {upcoming:%Y-%m-%d %H:%M}Z"
        )


@jobs.command(name="run")
@click.argument("name")
@_backend_option
@_now_option
@_stale_option
@_attempts_option
@click.pass_context
def run_command(
    context: click.Context,
    name: str,
    backend: str | None,
    now: datetime | None,
    stale_after: float,
    max_attempts: int,
) -> None:
    """Run job NAME now, outside its schedule."""
    from geoseg.jobs.runner import run_now

    result = run_now(
        _store(context),
        name,
        _backend(backend),
        _clock(now),
        _settings(stale_after, max_attempts),
    )
    _echo_result(result)
    if result.status == "failed":
        raise SystemExit(1)


@jobs.command(name="run-due")
@_backend_option
@_now_option
@_stale_option
@_attempts_option
@click.pass_context
def run_due_command(
    context: click.Context,
    backend: str | None,
    now: datetime | None,
    stale_after: float,
    max_attempts: int,
) -> None:
    """Run every period that is due, then exit (for cron, systemd timers, CronJobs)."""
    from geoseg.jobs.runner import run_due

    results = run_due(
        _store(context),
        _backend(backend),
        _clock(now),
        _settings(stale_after, max_attempts),
    )
    for result in results:
        _echo_result(result)
    if not results:
        click.echo("nothing due")
    if any(result.status == "failed" for result in results):
        raise SystemExit(1)


@jobs.command()
@_backend_option
@_stale_option
@_attempts_option
@click.option(
    "--poll",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Look for new or changed jobs at least this often (seconds).",
)
@click.pass_context
def serve(
    context: click.Context, backend: str | None, stale_after: float, max_attempts: int, poll: float
) -> None:
    """Run jobs when they are due, until SIGINT or SIGTERM.

    A first signal stops the scheduler after the run in progress (at once when
    idle); a second one interrupts that run, which is marked failed and retried
    by the next scheduler.
    """
    from geoseg.jobs.runner import next_due, run_due, utc_now, worker_id

    store = _store(context)
    job_backend = _backend(backend)
    settings = _settings(stale_after, max_attempts)
    worker = worker_id()
    stop = threading.Event()

    def on_signal(number: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo(f"received signal {number}; stopping after the current run", err=True)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    click.echo(f"geoseg jobs scheduler {worker} (pid {os.getpid()}) using {store.path}")
    try:
        while not stop.is_set():
            for result in run_due(store, job_backend, utc_now, settings, worker):
                _echo_result(result)
                if stop.is_set():
                    break
            if stop.is_set():
                break
            now = utc_now()
            upcoming = next_due(store, now)
            wait = poll if upcoming is None else (upcoming - now).total_seconds()
            stop.wait(min(max(wait, 0.0), poll))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("scheduler stopped")


@jobs.command()
@click.argument("name")
@click.pass_context
def history(context: click.Context, name: str) -> None:
    """Show the runs of job NAME, oldest first."""
    store = _store(context)
    store.job(name)
    runs = store.runs(name)
    if not runs:
        click.echo(f"job {name} has not run yet")
    for run in runs:
        pair = (
            f"{run.before_scene or '-'} -> {run.after_scene or '-'}"
            if run.after_scene
            else "no scene"
        )
        duration = "" if run.duration_s is None else f" {run.duration_s:.1f}s"
        detail = run.error if run.error else (run.output_dir or "")
        click.echo(
            f"#{run.id} {run.period_key} {run.trigger} {run.status} attempts={run.attempts}"
            f"{duration} {pair} {detail}".rstrip()
        )
