"""Scheduled, incremental change-detection jobs.

- :mod:`geoseg.jobs.spec`: the validated YAML job spec (:class:`JobSpec`).
- :mod:`geoseg.jobs.schedule`: due periods of a cron or interval schedule (pure).
- :mod:`geoseg.jobs.state`: the SQLite state store (:class:`JobStore`).
- :mod:`geoseg.jobs.interfaces`: the scene source and change runner a job calls.
- :mod:`geoseg.jobs.history`: scene-pair choice and cumulative tables (pure).
- :mod:`geoseg.jobs.runner`: claiming, running and recording periods.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from geoseg.errors import JobError

if TYPE_CHECKING:
    from geoseg.jobs.interfaces import JobBackend

BACKEND_ENV_VAR = "GEOSEG_JOBS_BACKEND"


def load_backend(target: str) -> JobBackend:
    """Build the backend named ``"module:function"`` (a function returning a JobBackend).

    Raises
    ------
    JobError
        When the module or function cannot be found or returns something else.
    """
    from geoseg.jobs.interfaces import JobBackend

    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise JobError(f"backend {target!r} must look like 'package.module:function'")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise JobError(f"cannot load the jobs backend {target!r}: {error}") from None
    backend = factory()
    if not isinstance(backend, JobBackend):
        raise JobError(f"{target} returned {type(backend).__name__}, not a JobBackend")
    return backend
