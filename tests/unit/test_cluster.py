"""The local cluster's worker processes start with the allocator settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workflows.cluster import WORKER_ENV, dask_client, resolve_scheduler

pytestmark = pytest.mark.filterwarnings(
    # distributed leaves an unbound probe socket to the garbage collector
    "ignore:Exception ignored in.*socket:pytest.PytestUnraisableExceptionWarning"
)


def _start_environment() -> dict[str, str]:
    """The environment the calling process was started with (what glibc malloc read)."""
    raw = Path(f"/proc/{os.getpid()}/environ").read_bytes()
    pairs = (entry.split(b"=", 1) for entry in raw.split(b"\0") if b"=" in entry)
    return {key.decode(): value.decode() for key, value in pairs}


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_local_workers_start_with_the_allocator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # as in a fresh process: Dask lets variables already in the environment win (and every
    # nanny started in this process, by earlier tests too, exports its settings there)
    for name in WORKER_ENV:
        monkeypatch.delenv(name, raising=False)
    with dask_client(None, n_workers=1) as client:
        started = list(client.run(_start_environment).values())
    assert len(started) == 1
    for name, value in WORKER_ENV.items():
        assert started[0].get(name) == value, name


def test_scheduler_address_comes_from_the_argument_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://elsewhere:8786")
    assert resolve_scheduler(None) == "tcp://elsewhere:8786"
    assert resolve_scheduler("tcp://here:8786") == "tcp://here:8786"
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
    assert resolve_scheduler(None) is None


def _profiler_enabled() -> bool:
    import dask

    return bool(dask.config.get("distributed.worker.profile.enabled"))


def test_local_workers_do_not_run_the_statistical_profiler() -> None:
    with dask_client(None, n_workers=1) as client:
        assert list(client.run(_profiler_enabled).values()) == [False]
