"""The job state store: SQLite tables ``jobs`` and ``runs``, safe for concurrent schedulers.

Each run is one row keyed by its job and period (``UNIQUE(job, period_key)``)
that records the scene pair it processed, the model's hash and the spec's
hash, its status, attempts, heartbeat, timings, outputs and error. Claiming a
run happens in one ``BEGIN IMMEDIATE`` transaction (SQLite's writer lock): a
job runs one period at a time, so two schedulers or two ``run-due``
invocations never run the same period twice. A ``running`` row whose heartbeat
is older than the staleness limit belongs to a dead process: it can be
claimed again and retried. Every function takes ``now``; nothing here reads a
clock.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from geoseg.errors import JobError
from geoseg.jobs.schedule import Period
from geoseg.jobs.spec import JobSpec, as_utc, job_spec_from_json

ENV_VAR = "GEOSEG_JOBS_DB"
RunStatus = Literal["running", "succeeded", "baseline", "no_new_data", "failed"]
DONE_STATUSES = ("succeeded", "baseline", "no_new_data")
PROCESSED_STATUSES = ("succeeded", "baseline")
"""Statuses whose ``after`` scene counts as processed for the next run."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,
    spec_json TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    added_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL REFERENCES jobs(name) ON DELETE CASCADE,
    period_key TEXT NOT NULL,
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    trigger TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    spec_hash TEXT NOT NULL,
    model TEXT,
    model_hash TEXT,
    before_scene TEXT,
    before_datetime TEXT,
    after_scene TEXT,
    after_datetime TEXT,
    claimed_by TEXT,
    heartbeat TEXT,
    started_at TEXT,
    finished_at TEXT,
    duration_s REAL,
    output_dir TEXT,
    outputs_json TEXT,
    error TEXT,
    UNIQUE (job, period_key)
);
CREATE UNIQUE INDEX IF NOT EXISTS runs_scene_pair
    ON runs (job, before_scene, after_scene, model_hash, spec_hash)
    WHERE status = 'succeeded';
"""


def default_db_path() -> Path:
    """``$GEOSEG_JOBS_DB``, else ``$XDG_DATA_HOME/geoseg/jobs.sqlite`` (``~/.local/share``)."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "geoseg" / "jobs.sqlite"


def _iso(moment: datetime) -> str:
    return as_utc(moment).isoformat(timespec="microseconds")


def _parse(text: str | None) -> datetime | None:
    return None if text is None else as_utc(datetime.fromisoformat(text))


@dataclass(frozen=True)
class JobRecord:
    """A job as stored: its spec and when it was added."""

    spec: JobSpec
    spec_hash: str
    added_at: datetime

    @property
    def anchor(self) -> datetime:
        """Where the schedule starts: ``schedule.start``, else when the job was added."""
        start = self.spec.schedule.start
        return as_utc(start) if start is not None else self.added_at


@dataclass(frozen=True)
class RunRecord:
    """One row of the ``runs`` table."""

    id: int
    job: str
    period_key: str
    period_start: datetime
    period_end: datetime
    trigger: str
    status: str
    attempts: int
    spec_hash: str
    model: str | None
    model_hash: str | None
    before_scene: str | None
    before_datetime: datetime | None
    after_scene: str | None
    after_datetime: datetime | None
    claimed_by: str | None
    heartbeat: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    output_dir: str | None
    outputs: tuple[str, ...]
    error: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
        """Build a record from a ``SELECT * FROM runs`` row."""
        values: dict[str, Any] = dict(zip(row.keys(), tuple(row), strict=True))
        outputs = values.pop("outputs_json")
        values["outputs"] = tuple(json.loads(outputs)) if outputs else ()
        for name in (
            "period_start",
            "period_end",
            "before_datetime",
            "after_datetime",
            "heartbeat",
            "started_at",
            "finished_at",
        ):
            values[name] = _parse(values[name])
        return cls(**values)


@dataclass(frozen=True)
class Claim:
    """A run this process now owns: the row id and which attempt this is (1 = first)."""

    run_id: int
    attempt: int
    worker: str


def _database_error(path: Path, error: sqlite3.DatabaseError) -> JobError:
    """The one-line error for a SQLite failure on the jobs database at ``path``."""
    if isinstance(error, sqlite3.OperationalError):
        if "disk" in str(error) and "full" in str(error):
            return JobError(
                f"{path}: the jobs database cannot grow: no space left on device in "
                f"{path.parent} ({error}); free some space"
            )
        return JobError(
            f"{path}: the jobs database failed ({error}); set {ENV_VAR} or --db to "
            "a writable file on a local disk"
        )
    return JobError(
        f"{path}: the jobs database is damaged or not a SQLite database ({error}); restore it "
        "from a backup, or move it away to start an empty one"
    )


class JobStore:
    """The SQLite state store at ``path`` (created with its folder on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise JobError(
                f"{self.path}: cannot create the jobs database folder ({error}); "
                f"set {ENV_VAR} or --db to a writable path"
            ) from None
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            connection = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        except sqlite3.Error as error:
            raise JobError(f"{self.path}: cannot open the jobs database ({error})") from None
        connection.row_factory = sqlite3.Row
        with closing(connection):
            try:
                connection.execute("PRAGMA foreign_keys=ON")
                yield connection
            except sqlite3.DatabaseError as error:
                failure = _database_error(self.path, error)
            else:
                return
        raise failure  # outside the handler: one message, no SQLite chain

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: holds SQLite's write lock from its first statement."""
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                if connection.in_transaction:  # SQLite may have rolled back already (disk full)
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    # jobs ------------------------------------------------------------------------------

    def add_job(self, spec: JobSpec, now: datetime) -> bool:
        """Add a job, or replace the spec of the job with the same name.

        Returns
        -------
        bool
            True when the job is new.
        """
        spec_json = spec.model_dump_json()
        with self._transaction() as connection:
            existing = connection.execute(
                "SELECT name FROM jobs WHERE name = ?", (spec.name,)
            ).fetchone()
            if existing is None:
                connection.execute(
                    "INSERT INTO jobs (name, spec_json, spec_hash, added_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (spec.name, spec_json, spec.spec_hash(), _iso(now), _iso(now)),
                )
                return True
            connection.execute(
                "UPDATE jobs SET spec_json = ?, spec_hash = ?, updated_at = ? WHERE name = ?",
                (spec_json, spec.spec_hash(), _iso(now), spec.name),
            )
            return False

    def jobs(self) -> list[JobRecord]:
        """All jobs, by name."""
        with self._connect() as connection:
            rows = connection.execute("SELECT * FROM jobs ORDER BY name").fetchall()
        return [self._job_record(row) for row in rows]

    def job(self, name: str) -> JobRecord:
        """The job called ``name``; :class:`JobError` listing the known jobs when unknown."""
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM jobs WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = ", ".join(record.spec.name for record in self.jobs()) or "none"
            raise JobError(
                f"no job named {name!r} in {self.path} (known: {known}); "
                "add it with 'geoseg jobs add SPEC.yaml'"
            )
        return self._job_record(row)

    def _job_record(self, row: sqlite3.Row) -> JobRecord:
        spec = job_spec_from_json(row["spec_json"], f"{self.path} job {row['name']}")
        added_at = _parse(row["added_at"])
        if added_at is None:
            raise JobError(f"{self.path}: job {row['name']} has no added_at time")
        return JobRecord(spec=spec, spec_hash=row["spec_hash"], added_at=added_at)

    # runs ------------------------------------------------------------------------------

    def runs(self, job: str) -> list[RunRecord]:
        """All runs of ``job``, oldest period first."""
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT * FROM runs WHERE job = ? ORDER BY period_end, id", (job,)
            ).fetchall()
        return [RunRecord.from_row(row) for row in rows]

    def run(self, run_id: int) -> RunRecord:
        """The run with id ``run_id``."""
        with self._connect() as connection:
            row = connection.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise JobError(f"{self.path}: no run with id {run_id}")
        return RunRecord.from_row(row)

    def last_scheduled_end(self, job: str) -> datetime | None:
        """End of the latest scheduled period taken for ``job`` (any status), or None."""
        with self._connect() as connection:
            row = connection.execute(
                "SELECT MAX(period_end) FROM runs WHERE job = ? AND trigger = 'schedule'", (job,)
            ).fetchone()
        return _parse(row[0])

    def last_processed(self, job: str) -> RunRecord | None:
        """The run whose ``after`` scene is the newest processed for ``job``, or None."""
        placeholders = ", ".join("?" for _ in PROCESSED_STATUSES)
        with self._connect() as connection:
            row = connection.execute(
                f"SELECT * FROM runs WHERE job = ? AND status IN ({placeholders}) "
                "ORDER BY after_datetime DESC, id DESC LIMIT 1",
                (job, *PROCESSED_STATUSES),
            ).fetchone()
        return None if row is None else RunRecord.from_row(row)

    def succeeded_runs(self, job: str) -> list[RunRecord]:
        """Runs of ``job`` that produced change outputs, by ``after`` scene time."""
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT * FROM runs WHERE job = ? AND status = 'succeeded' "
                "ORDER BY after_datetime, id",
                (job,),
            ).fetchall()
        return [RunRecord.from_row(row) for row in rows]

    def retryable(
        self, job: str, now: datetime, stale_after: timedelta, max_attempts: int
    ) -> list[RunRecord]:
        """Scheduled runs of ``job`` to retry: failed, or running with a stale heartbeat."""
        stale_before = _iso(as_utc(now) - stale_after)
        with self._connect() as connection:
            rows = connection.execute(
                "SELECT * FROM runs WHERE job = ? AND trigger = 'schedule' AND attempts < ? AND "
                "(status = 'failed' OR (status = 'running' AND heartbeat < ?)) "
                "ORDER BY period_end, id",
                (job, max_attempts, stale_before),
            ).fetchall()
        return [RunRecord.from_row(row) for row in rows]

    def claim(
        self,
        job: str,
        period: Period,
        trigger: Literal["schedule", "manual"],
        spec_hash: str,
        worker: str,
        now: datetime,
        stale_after: timedelta,
        max_attempts: int,
    ) -> Claim | None:
        """Atomically take ``period`` of ``job`` for ``worker``; None when it must not run.

        It must not run when another live process is running this job (a fresh
        heartbeat), when the period is already done, or when it failed
        ``max_attempts`` times. A period whose run failed, or whose runner died
        (stale heartbeat), is taken again with its attempt count increased.
        """
        stale_before = _iso(as_utc(now) - stale_after)
        key = period.key if trigger == "schedule" else f"manual-{period.key}"
        with self._transaction() as connection:
            busy = connection.execute(
                "SELECT id FROM runs WHERE job = ? AND status = 'running' AND heartbeat >= ?",
                (job, stale_before),
            ).fetchone()
            if busy is not None:
                return None
            row = connection.execute(
                "SELECT id, status, attempts FROM runs WHERE job = ? AND period_key = ?",
                (job, key),
            ).fetchone()
            if row is None:
                cursor = connection.execute(
                    "INSERT INTO runs (job, period_key, period_start, period_end, trigger, "
                    "status, attempts, spec_hash, claimed_by, heartbeat, started_at) "
                    "VALUES (?, ?, ?, ?, ?, 'running', 1, ?, ?, ?, ?)",
                    (
                        job,
                        key,
                        _iso(period.start),
                        _iso(period.end),
                        trigger,
                        spec_hash,
                        worker,
                        _iso(now),
                        _iso(now),
                    ),
                )
                if cursor.lastrowid is None:
                    raise JobError(f"{self.path}: could not record a run of {job}")
                return Claim(run_id=cursor.lastrowid, attempt=1, worker=worker)
            if row["status"] in DONE_STATUSES or row["attempts"] >= max_attempts:
                return None
            connection.execute(
                "UPDATE runs SET status = 'running', attempts = attempts + 1, claimed_by = ?, "
                "heartbeat = ?, started_at = ?, spec_hash = ?, error = NULL, finished_at = NULL "
                "WHERE id = ?",
                (worker, _iso(now), _iso(now), spec_hash, row["id"]),
            )
            return Claim(run_id=row["id"], attempt=row["attempts"] + 1, worker=worker)

    def beat(self, claim: Claim, now: datetime) -> bool:
        """Refresh the heartbeat of a claimed run; False when the claim was lost."""
        with self._transaction() as connection:
            cursor = connection.execute(
                "UPDATE runs SET heartbeat = ? WHERE id = ? AND claimed_by = ? "
                "AND status = 'running'",
                (_iso(now), claim.run_id, claim.worker),
            )
            return cursor.rowcount == 1

    def record_pair(
        self,
        claim: Claim,
        model: str,
        model_hash: str,
        before: tuple[str, datetime] | None,
        after: tuple[str, datetime] | None,
    ) -> None:
        """Record the model and scene pair (``(id, datetime)`` each) a claimed run processes."""
        with self._transaction() as connection:
            connection.execute(
                "UPDATE runs SET model = ?, model_hash = ?, before_scene = ?, before_datetime = ?, "
                "after_scene = ?, after_datetime = ? WHERE id = ? AND claimed_by = ?",
                (
                    model,
                    model_hash,
                    None if before is None else before[0],
                    None if before is None else _iso(before[1]),
                    None if after is None else after[0],
                    None if after is None else _iso(after[1]),
                    claim.run_id,
                    claim.worker,
                ),
            )

    def finish(
        self,
        claim: Claim,
        status: RunStatus,
        now: datetime,
        output_dir: str | None = None,
        outputs: tuple[str, ...] = (),
        error: str | None = None,
    ) -> None:
        """Close a claimed run with its final status, outputs or error.

        Raises
        ------
        JobError
            When the claim was lost (another process took the run over after
            this one's heartbeat went stale).
        """
        with self._transaction() as connection:
            row = connection.execute(
                "SELECT started_at FROM runs "
                "WHERE id = ? AND claimed_by = ? AND status = 'running'",
                (claim.run_id, claim.worker),
            ).fetchone()
            if row is None:
                raise JobError(
                    f"run {claim.run_id} was taken over by another process (stale heartbeat); "
                    "raise the staleness limit if runs are slow rather than dead"
                )
            started = _parse(row["started_at"])
            duration = None if started is None else (as_utc(now) - started).total_seconds()
            try:
                connection.execute(
                    "UPDATE runs SET status = ?, finished_at = ?, duration_s = ?, "
                    "output_dir = ?, outputs_json = ?, error = ?, heartbeat = ? WHERE id = ?",
                    (
                        status,
                        _iso(now),
                        duration,
                        output_dir,
                        json.dumps(list(outputs)),
                        error,
                        _iso(now),
                        claim.run_id,
                    ),
                )
            except sqlite3.IntegrityError:
                raise JobError(
                    f"run {claim.run_id}: another run of this job already processed the same "
                    "scene pair with the same model and spec"
                ) from None
