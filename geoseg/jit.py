"""Compiling pixel loops with numba, typed for mypy.

The few loops that must visit every pixel or every edge (tracing region
outlines, joining them across seams) are plain Python functions over numpy
arrays compiled by numba: no Python objects inside, the GIL released, and the
machine code cached on disk beside the module (the first call in a fresh
environment compiles for a few seconds; later processes load the cache).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

Function = TypeVar("Function", bound=Callable[..., Any])


def compiled(function: Function) -> Function:
    """``function`` compiled by numba in nopython mode, without the GIL, cached."""
    return cast(Function, numba.njit(cache=True, nogil=True)(function))
