"""Connecting to Dask: a local cluster by default, or an existing scheduler.

Also where inference runs on a cluster: :func:`inference_placement` asks the
workers what hardware they have; the library's
:func:`geoseg.predict.placement.place_inference` then resolves ``--device auto``
for them (not for the machine that submits) and restricts inference tasks to
the workers with a GPU when only some have one.
"""

from __future__ import annotations

import ast
import contextlib
import contextvars
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
from distributed import Client, LocalCluster

from geoseg.predict.placement import InferencePlacement, place_inference

if TYPE_CHECKING:  # geoseg.predict.inference imports torch; workflows that need no model skip it
    from geoseg.models.card import ModelCard, OnnxRecord
    from geoseg.predict.inference import DeviceSupport
    from geoseg.predict.settings import InferenceSettings

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"

# Keep the model's large activation buffers mapped between forwards: glibc
# otherwise returns them to the system after each tile and page-faults them
# back (measured 1.5x slower CPU forwards). Applies to worker processes we start,
# through distributed's pre-spawn-environ: glibc reads MALLOC_* when a process starts,
# and LocalCluster(env=...) only sets them after the worker has started (no effect).
# MALLOC_ARENA_MAX=1: Dask runs tasks in threads, and glibc gives threads other
# than the main one arenas of their own, made of heaps of at most 64 MB that are
# unmapped or trimmed on their own terms, whatever MALLOC_MMAP_MAX_ says. Measured
# for two 8-tile forwards of the shipped model in a thread: 1.1 M page faults and
# 2.2 s system CPU without it, 92 k and 0.15 s with it (wall 8.3 -> 5.1 s). One
# arena costs nothing with one task thread per worker.
WORKER_ENV = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(1 << 34),
    "OMP_NUM_THREADS": "1",
}


QUIET_EVENT_LOOPS = {
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.scheduler.work-stealing-interval": "1s",
}
"""Slower periodic callbacks of the local scheduler, nannies and workers.

Dask's defaults (event-loop tick every 20 ms, system monitor every 0.5 s, memory
monitor and work stealing every 0.1 s) serve dashboards and large clusters. On
an idle local cluster of 2 workers they burned 1.4 CPU-seconds per 20 s (0.74 in
the client process hosting scheduler and nannies, 0.34 in each worker): 3.5% of
a 2-core machine taken from the model. With these intervals: 0.25 s. Blocked
event loops are still reported (after ``distributed.admin.tick.limit``) and a
worker over its memory limit is still stopped, within a second."""


SCHEDULER_HTTP: dict[str, object] = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
"""``scheduler_kwargs`` of a local cluster: no dashboard, HTTP routes on a free localhost port.

Without them the scheduler serves its HTTP routes on port 8787; when another
cluster holds that port, distributed's failed bind leaks a socket.
"""


def local_worker_settings() -> dict[str, object]:
    """Dask settings for the worker processes of a local cluster (``dask.config.set``).

    The workers start with :data:`WORKER_ENV` (distributed's ``pre-spawn-environ``:
    glibc reads ``MALLOC_*`` when a process starts, and ``LocalCluster(env=...)``
    sets them only after the worker has started), without the statistical
    profiler, which samples every task thread each 10 ms (3-10% of a worker's CPU,
    measured on vectorize) for a dashboard the local cluster does not start, and
    with the slower periodic callbacks of :data:`QUIET_EVENT_LOOPS`.
    As everywhere in Dask, a variable already set in the environment wins, so
    users can override these.
    """
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ"), **WORKER_ENV}
    return {
        "distributed.nanny.pre-spawn-environ": environ,
        "distributed.worker.profile.enabled": False,
        **QUIET_EVENT_LOOPS,
    }


def dask_setup(worker: object) -> None:
    """Preload hook of the local cluster's workers: they ignore SIGINT.

    Ctrl-C reaches every process of the terminal's process group; the client
    that started the workers handles it (one line, the work folder kept) and
    closes them, instead of each worker printing its ``KeyboardInterrupt``.
    Runs in the worker's main thread (distributed calls it on its event loop).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def dask_teardown(worker: object) -> None:
    """Preload hook of the local cluster's workers, as they close: a quick exit.

    When the worker process then exits, Python's finalization collects the
    garbage of the whole heap several times (torch, numpy, GDAL... 450 k
    objects, 0.6 s a collection measured after a prediction), and the nanny,
    which gives a closing worker 4 s, killed it ("Worker process still alive
    after 4.0 seconds, killing") after every prediction of a 2048 px scene.
    Objects still alive at this point live until the process ends, when the
    system takes their memory back in one go: they are moved out of the
    collector's sight (``gc.freeze``) and the collector is off. Measured: the
    cluster closed in 1.2 s instead of 3.5-4.2 s, without the warning.
    """
    gc.disable()
    gc.freeze()


LOCAL_WORKER_PRELOAD = ["workflows.cluster"]
"""Preload of the local cluster's workers (:func:`dask_setup`, :func:`dask_teardown`)."""


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not isinstance(test, ast.Compare) or len(test.comparators) != 1:
        return False
    sides = [test.left, test.comparators[0]]
    names = {side.id for side in sides if isinstance(side, ast.Name)}
    texts = {side.value for side in sides if isinstance(side, ast.Constant)}
    return names == {"__name__"} and texts == {"__main__"}


def unguarded_main_script() -> Path | None:
    """The running script when worker processes would run it again; else None.

    Dask starts local workers with multiprocessing's ``spawn``, which imports
    the main script in every new process: a script that calls geoseg at top
    level, without ``if __name__ == "__main__":``, would then start a cluster
    inside each worker, and the workers fail ("Nanny failed to start").
    Notebooks, ``python -c``, ``python -m package`` and guarded scripts are
    safe; the script is read (not run) to find its guard.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and (spec.name == "__main__" or spec.name.endswith(".__main__")):
        return None
    location = getattr(main, "__file__", None)
    if not location or not str(location).endswith(".py") or not Path(location).is_file():
        return None
    try:
        tree = ast.parse(Path(location).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    guarded = any(isinstance(node, ast.If) and _is_main_test(node.test) for node in tree.body)
    return None if guarded else Path(location)


def resolve_scheduler(address: str | None) -> str | None:
    """The scheduler to use: ``address``, else ``$DASK_SCHEDULER_ADDRESS``, else None."""
    return address or os.environ.get(SCHEDULER_ENV) or None


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str = "auto",
) -> Iterator[Client]:
    """Yield a Dask client for a run.

    Parameters
    ----------
    scheduler
        Address of an existing scheduler (``tcp://host:8786``). When None,
        ``$DASK_SCHEDULER_ADDRESS`` is used, and when that is unset too a
        local cluster of worker processes is started and closed afterwards.
    n_workers
        Workers of the local cluster (default: one per core, at most 4).
    threads_per_worker
        Threads per local worker; inference tasks use intra-op threads instead.
    memory_limit
        Memory limit per local worker.
    """
    address = resolve_scheduler(scheduler)
    if address is not None:
        with Client(address, set_as_default=False) as client:
            yield client
        return
    with local_client(
        n_workers=n_workers, threads_per_worker=threads_per_worker, memory_limit=memory_limit
    ) as client:
        yield client


@contextlib.contextmanager
def local_client(
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str = "auto",
) -> Iterator[Client]:
    """Yield a client of a new local cluster of worker processes, closed afterwards.

    The workers start with :func:`local_worker_settings`. Called from a script
    without a main guard (:func:`unguarded_main_script`), the workers are
    threads of this process instead: the results are the same (placement
    invariance), the script needs no change.
    Inside :func:`early_local_cluster` with the same parameters, the client of
    the cluster already starting there is yielded (and closed there).
    Parameters as for :func:`dask_client`.
    """
    options = _local_options(n_workers, threads_per_worker, memory_limit)
    early = _EARLY.get()
    if early is not None and early.options == options:
        yield early.client()
        return
    with dask.config.set(local_worker_settings()), _local_cluster_client(options) as client:
        yield client


def _local_options(
    n_workers: int | None, threads_per_worker: int, memory_limit: str
) -> tuple[int, int, str]:
    """The local cluster's workers, threads per worker and memory limit, defaults filled in."""
    workers = n_workers or max(1, min(4, os.cpu_count() or 1))
    return workers, threads_per_worker, memory_limit


@contextlib.contextmanager
def _local_cluster_client(options: tuple[int, int, str]) -> Iterator[Client]:
    """A local cluster and its client; the client closes first, then the cluster.

    The caller holds :func:`local_worker_settings` in ``dask.config`` meanwhile.
    """
    workers, threads_per_worker, memory_limit = options
    processes = unguarded_main_script() is None
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            processes=processes,
            memory_limit=memory_limit,
            dashboard_address=None,
            scheduler_kwargs=SCHEDULER_HTTP,
            **({"env": WORKER_ENV, "preload": LOCAL_WORKER_PRELOAD} if processes else {}),
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


class EarlyCluster:
    """A local cluster starting in a thread while the command validates and plans.

    Started by :func:`early_local_cluster`; the first :func:`local_client` with
    the same parameters waits for it (:meth:`client`). Its timings say how
    long the start took in its thread, how long the command waited for it, and
    how long closing took.
    """

    def __init__(self, options: tuple[int, int, str]) -> None:
        self.options = options
        self.timings: dict[str, float] = {}
        self._stack = contextlib.ExitStack()
        self._client: Client | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, name="geoseg-cluster-start")

    def _start(self) -> None:
        clock = time.perf_counter()
        try:
            self._client = self._stack.enter_context(_local_cluster_client(self.options))
        except BaseException as error:  # re-raised in the thread that asks for the client
            self._error = error
        self.timings["cluster_start_s"] = time.perf_counter() - clock

    def begin(self) -> None:
        """Start the cluster in the background."""
        self._thread.start()

    def client(self) -> Client:
        """The cluster's client, once started (the wait is added to ``cluster_wait_s``).

        Raises
        ------
        Exception
            Whatever starting the cluster raised.
        """
        clock = time.perf_counter()
        self._thread.join()
        waited = time.perf_counter() - clock
        self.timings["cluster_wait_s"] = self.timings.get("cluster_wait_s", 0.0) + waited
        if self._error is not None:
            raise self._error
        assert self._client is not None
        return self._client

    def close(self) -> None:
        """Close the client, then the cluster (after its start, if still under way)."""
        self._thread.join()
        clock = time.perf_counter()
        self._stack.close()
        self.timings["shutdown_s"] = time.perf_counter() - clock


_EARLY: contextvars.ContextVar[EarlyCluster | None] = contextvars.ContextVar(
    "geoseg_early_cluster", default=None
)


def early_timings() -> dict[str, float]:
    """The timings so far of the :func:`early_local_cluster` of the block; empty outside one.

    ``cluster_start_s`` (its start, in the background) and ``cluster_wait_s``
    (how long the command waited for it), for a run's manifest.
    """
    early = _EARLY.get()
    return {} if early is None else dict(early.timings)


@contextlib.contextmanager
def early_local_cluster(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str = "auto",
) -> Iterator[EarlyCluster | None]:
    """Start the default local cluster now, in the background, for the block.

    A command calls it first and then validates its inputs, reads the model
    and plans while the workers start; the :func:`local_client` (or
    :func:`dask_client` without an address) that it asks for later gets this
    cluster. With a scheduler (``scheduler`` or ``$DASK_SCHEDULER_ADDRESS``)
    nothing starts and None is yielded. The cluster closes at the end of the
    block, the client first.
    """
    if resolve_scheduler(scheduler) is not None:
        yield None
        return
    early = EarlyCluster(_local_options(n_workers, threads_per_worker, memory_limit))
    with dask.config.set(local_worker_settings()):
        token = _EARLY.set(early)
        try:
            early.begin()
            yield early
        finally:
            _EARLY.reset(token)
            early.close()


def model_placement(
    settings: InferenceSettings,
    card: ModelCard,
    client: Client | None,
    scheduler: str | None = None,
) -> InferencePlacement:
    """:func:`inference_placement` for ``card``'s model under ``settings``.

    The device and precision asked for come from ``settings``, the CPU bf16
    agreement from the model card: what every run, prediction and
    ``geoseg.segment`` passes.
    """
    return inference_placement(
        client,
        settings.device,
        scheduler,
        precision=settings.precision,
        cpu_bf16_agreement=card.cpu_bf16_agreement,
        engine=settings.engine,
        onnx=card.onnx,
    )


def inference_placement(
    client: Client | None,
    device: str,
    scheduler: str | None = None,
    *,
    precision: str = "auto",
    cpu_bf16_agreement: float | None = None,
    engine: str = "torch",
    onnx: OnnxRecord | None = None,
) -> InferencePlacement:
    """Ask the workers a run will use about their hardware, then :func:`place_inference`.

    The workers are ``client``'s when given; else those of the scheduler at
    ``scheduler`` or ``$DASK_SCHEDULER_ADDRESS`` (connected to briefly); else
    this machine, where the default local cluster runs (nothing is started for
    that). On a cluster without workers yet (adaptive), the first worker to
    start is asked. ``precision``, ``engine``, ``cpu_bf16_agreement`` and
    ``onnx`` (the model card's) go to :func:`place_inference`.

    Raises
    ------
    ConfigError
        As :func:`geoseg.predict.placement.place_inference`.
    """
    from geoseg.predict.inference import device_support

    options: dict[str, Any] = {
        "precision": precision,
        "cpu_bf16_agreement": cpu_bf16_agreement,
        "engine": engine,
        "onnx": onnx,
    }
    if client is None:
        address = resolve_scheduler(scheduler)
        if address is None:
            local = {"local": device_support()}
            return place_inference(device, local, where="this machine", **options)
        with Client(address, set_as_default=False) as connected:
            return inference_placement(connected, device, **options)
    info = client.scheduler_info()
    where = f"the Dask cluster at {info.get('address', '?')}"
    workers = info.get("workers", {})
    supports: dict[str, DeviceSupport]
    if workers:
        supports = client.run(device_support)
    else:
        # no worker yet: ask the first one through a task, which an adaptive cluster
        # starts workers for (client.run would only see the workers already there)
        address, support = client.submit(_worker_device_support, pure=False).result()
        supports = {address: support}
        workers = client.scheduler_info().get("workers", {})
    resources = {address: dict(w.get("resources") or {}) for address, w in workers.items()}
    return place_inference(device, supports, resources, where=where, **options)


def _worker_device_support() -> tuple[str, DeviceSupport]:
    """In a task: this worker's address and hardware."""
    from distributed import get_worker

    from geoseg.predict.inference import device_support

    return get_worker().address, device_support()
