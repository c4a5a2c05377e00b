"""Task bodies as Dask runs them: a failure reaches the client as its geoseg error.

distributed pickles what a task raises together with its cause and context;
when one of those (a GDAL or SQLite exception) does not unpickle, the client
gets a bare ``Exception`` holding a repr, and the command line a traceback.
:func:`geoseg_task` re-raises a :class:`~geoseg.errors.GeosegError` detached
from its chain, so the client re-raises the same type with the same message.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from geoseg.errors import GeosegError, detached

P = ParamSpec("P")
R = TypeVar("R")


def geoseg_task(body: Callable[P, R]) -> Callable[P, R]:
    """``body`` for ``client.submit``: a geoseg error leaves it without its chain."""

    @functools.wraps(body)
    def task(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return body(*args, **kwargs)
        except GeosegError as error:
            failure = detached(error)
        raise failure  # outside the handler: no __context__

    return task
