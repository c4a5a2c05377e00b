"""The local cluster's worker processes start with the allocator settings."""

from __future__ import annotations

import gc
import os
import resource
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from workflows.cluster import (
    WORKER_ENV,
    dask_client,
    early_local_cluster,
    early_timings,
    local_client,
    resolve_scheduler,
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


def _forward_faults() -> int:
    """In a task thread: page faults of the second of two forwards of a shipped model."""
    from geoseg.predict.inference import cached_model, forward_probabilities, model_key

    loaded = cached_model(model_key("landcover-landsat", "cpu"))
    batch = np.random.default_rng(0).random((4, 4, 512, 512), dtype=np.float32)
    forward_probabilities(loaded, batch, "cpu", "fp32")
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    forward_probabilities(loaded, batch, "cpu", "fp32")
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(resource, "RUSAGE_THREAD"), reason="needs Linux getrusage")
def test_forwards_in_task_threads_reuse_their_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    # Dask runs tasks in threads; with a malloc arena per thread (no MALLOC_ARENA_MAX=1)
    # the activations are given back and faulted in again: 130-180 k faults here, against
    # 0-8 k with it (some growth of the one heap)
    for name in WORKER_ENV:
        monkeypatch.delenv(name, raising=False)
    with dask_client(None, n_workers=1) as client:
        faults = client.submit(_forward_faults, pure=False).result()
    assert faults < 40_000


def test_local_scheduler_leaves_port_8787_alone() -> None:
    # a socket of another cluster (or of anything else) on the dashboard's default port:
    # the local scheduler's HTTP server must not try it (a failed bind leaked a socket,
    # which pytest reports as an error at garbage collection)
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8787))
        holder.listen()
    except OSError:
        pass  # already taken by something else: the same situation
    try:
        with dask_client(None, n_workers=1) as client:
            address, port = client.run_on_scheduler(
                lambda dask_scheduler: (
                    dask_scheduler.http_server.address,
                    dask_scheduler.http_server.port,
                )
            )
            assert client.submit(int, "7").result() == 7
        gc.collect()
    finally:
        holder.close()
    assert address == "127.0.0.1" and port not in (0, 8787)


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


def _tick_interval() -> str:
    import dask

    return str(dask.config.get("distributed.admin.tick.interval"))


def test_local_workers_do_not_run_the_statistical_profiler() -> None:
    with dask_client(None, n_workers=1) as client:
        assert list(client.run(_profiler_enabled).values()) == [False]
        # slow periodic callbacks, in the workers and in the scheduler's process
        assert list(client.run(_tick_interval).values()) == ["1s"]
        assert client.run_on_scheduler(_tick_interval) == "1s"


def test_unguarded_main_script_reads_the_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    from workflows.cluster import unguarded_main_script

    script = tmp_path / "analysis.py"
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", main)
    script.write_text("import geoseg\nprint(1)\n")
    assert unguarded_main_script() == script
    script.write_text("import geoseg\nif '__main__' == __name__:\n    print(1)\n")
    assert unguarded_main_script() is None
    main.__file__ = None
    assert unguarded_main_script() is None  # a notebook or python -c


def test_the_early_cluster_is_the_local_client_of_its_block() -> None:
    with early_local_cluster(None, n_workers=1) as early:
        assert early is not None
        with dask_client(None, n_workers=1) as client:
            assert client.submit(sum, [1, 2], pure=False).result() == 3
        with local_client(n_workers=1) as again:
            assert again is client  # the same cluster, still open
            assert client.status == "running"
        assert set(early_timings()) == {"cluster_start_s", "cluster_wait_s"}
    assert client.status == "closed"  # closed with the block
    assert set(early.timings) == {"cluster_start_s", "cluster_wait_s", "shutdown_s"}
    # waited from after the start began to a little after it ended (the thread's own end)
    assert early.timings["cluster_wait_s"] <= early.timings["cluster_start_s"] + 0.5
    assert early_timings() == {}


def test_no_early_cluster_with_a_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:1")
    with early_local_cluster(None) as early:
        assert early is None
        assert early_timings() == {}
