"""Dask clusters started by tests: local, without a dashboard, HTTP routes on a free port.

(:data:`workflows.cluster.SCHEDULER_HTTP`: the scheduler's default port 8787 may be
held by another cluster, and distributed then leaks the socket of the failed bind.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from distributed import Client, LocalCluster

from workflows.cluster import SCHEDULER_HTTP


@contextlib.contextmanager
def started_cluster(
    n_workers: int = 1, *, threads_per_worker: int = 1, processes: bool = False, **kwargs: Any
) -> Iterator[LocalCluster]:
    """A local cluster, closed afterwards; ``kwargs`` go to ``LocalCluster``."""
    with LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=processes,
        scheduler_kwargs=SCHEDULER_HTTP,
        **kwargs,
    ) as cluster:
        yield cluster


@contextlib.contextmanager
def started_client(
    n_workers: int = 1, *, threads_per_worker: int = 1, processes: bool = False, **kwargs: Any
) -> Iterator[Client]:
    """A client of :func:`started_cluster` (not set as the default client)."""
    with (
        started_cluster(
            n_workers, threads_per_worker=threads_per_worker, processes=processes, **kwargs
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client
