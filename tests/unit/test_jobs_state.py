"""The state store's claims: one live run per job, stale heartbeats retried, done stays done."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from geoseg.errors import JobError
from geoseg.jobs.schedule import Period
from geoseg.jobs.spec import JobSpec, validate_mapping
from geoseg.jobs.state import Claim, JobStore

T0 = datetime(2026, 2, 1, tzinfo=UTC)
STALE = timedelta(minutes=5)
P1 = Period(T0 - timedelta(days=1), T0)
P2 = Period(T0, T0 + timedelta(days=1))


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    spec = validate_mapping(
        JobSpec,
        {
            "name": "job",
            "area": {"bbox": [0, 0, 1, 1]},
            "schedule": {"interval": "1d"},
            "output_dir": str(tmp_path / "out"),
        },
        "test",
    )
    store = JobStore(tmp_path / "deep" / "jobs.sqlite")
    store.add_job(spec, T0)
    return store


def claim(
    store: JobStore, period: Period, worker: str, now: datetime, attempts: int = 3
) -> Claim | None:
    return store.claim("job", period, "schedule", "hash", worker, now, STALE, attempts)


def test_one_live_run_per_job(store: JobStore) -> None:
    first = claim(store, P1, "a", T0)
    assert first is not None and first.attempt == 1
    assert claim(store, P1, "b", T0 + timedelta(minutes=1)) is None
    assert claim(store, P2, "b", T0 + timedelta(minutes=1)) is None  # the job is busy
    with pytest.raises(JobError, match="no job named 'other'"):
        store.job("other")


def test_stale_run_is_taken_over_and_the_dead_owner_cannot_finish(store: JobStore) -> None:
    dead = claim(store, P1, "a", T0)
    assert dead is not None
    assert store.beat(dead, T0 + timedelta(minutes=4))
    later = T0 + timedelta(minutes=10)
    assert [run.period_key for run in store.retryable("job", later, STALE, 3)] == [P1.key]
    retry = claim(store, P1, "b", later)
    assert retry is not None and (retry.run_id, retry.attempt) == (dead.run_id, 2)
    assert not store.beat(dead, later)
    with pytest.raises(JobError, match="taken over by another process"):
        store.finish(dead, "succeeded", later)
    store.finish(retry, "no_new_data", later + timedelta(seconds=30))
    (run,) = store.runs("job")
    assert (run.status, run.attempts, run.claimed_by, run.duration_s) == (
        "no_new_data",
        2,
        "b",
        30.0,
    )
    assert claim(store, P1, "c", later + timedelta(hours=1)) is None  # done stays done
    assert store.last_scheduled_end("job") == P1.end


def test_failed_runs_are_retried_up_to_max_attempts(store: JobStore) -> None:
    now = T0
    for attempt in (1, 2):
        taken = claim(store, P1, "a", now, attempts=2)
        assert taken is not None and taken.attempt == attempt
        store.finish(taken, "failed", now, error=f"boom {attempt}")
        now += timedelta(minutes=1)
    assert store.retryable("job", now, STALE, 2) == []
    assert claim(store, P1, "a", now, attempts=2) is None
    assert store.runs("job")[0].error == "boom 2"


def test_a_scene_pair_is_processed_once(store: JobStore) -> None:
    pair = (("s1", T0 - timedelta(days=30)), ("s2", T0 - timedelta(days=2)))
    first = claim(store, P1, "a", T0)
    assert first is not None
    store.record_pair(first, "model", "m" * 64, *pair)
    store.finish(first, "succeeded", T0)
    second = claim(store, P2, "a", T0 + timedelta(days=1))
    assert second is not None
    store.record_pair(second, "model", "m" * 64, *pair)
    with pytest.raises(JobError, match="already processed the same scene pair"):
        store.finish(second, "succeeded", T0 + timedelta(days=1))
    processed = store.last_processed("job")
    assert processed is not None and processed.after_scene == "s2"
