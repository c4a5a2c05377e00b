"""The exception hierarchy of geoseg.

Every error geoseg raises on purpose derives from :class:`GeosegError`. Each
subclass also inherits the matching builtin (``ValueError``, ``OSError``,
``KeyError``...) so that callers who catch builtins keep working. Messages name
the file or value at fault and say how to fix it.

``exit_code`` is the command line's exit status for the error: 2 when the
user can fix the input or the options (the default), 1 for everything else
(a full disk, a busy work folder, a failed job, a bug).
"""

from __future__ import annotations

import errno
from pathlib import Path

BAD_INPUT_EXIT = 2
"""Exit status of a run refused for its input or options (as click's usage errors)."""

FAILURE_EXIT = 1
"""Exit status of a run that failed for any other reason."""


class GeosegError(Exception):
    """Root of every error raised by geoseg on purpose."""

    exit_code = BAD_INPUT_EXIT


class ConfigError(GeosegError, ValueError):
    """A configuration file or option is invalid (unknown key, bad value)."""


class InputError(GeosegError, ValueError):
    """An input dataset exists but cannot be used (wrong bands, no CRS, too small...)."""


class RasterReadError(GeosegError, OSError):
    """A raster file is missing, unreadable, truncated or not a raster."""


class VectorReadError(GeosegError, OSError):
    """A vector file is missing, unreadable, or lacks the layer or field asked for."""


class OutputError(GeosegError, OSError):
    """An output cannot be written (directory missing, not writable...)."""


class ChecksumError(GeosegError, OSError):
    """A file's SHA-256 does not match the value recorded for it."""


class DataDirError(GeosegError, FileNotFoundError):
    """The sample-data directory cannot be found."""


class ModelError(GeosegError, ValueError):
    """A model name, directory, card or checkpoint is invalid."""


class BandMismatchError(InputError):
    """A raster does not hold the bands a model card requires."""


class CatalogError(GeosegError, LookupError):
    """A catalog cannot be read, or a search matches nothing."""


class NoSceneError(CatalogError):
    """A catalog search finds no scene in its date range (there are some at other times)."""


class BBoxError(GeosegError, ValueError):
    """A bounding box is invalid or lies outside every scene."""


class GridMismatchError(InputError):
    """Two rasters cannot be brought onto a common grid (no overlap...)."""


class JobError(GeosegError, RuntimeError):
    """A scheduled job is misconfigured or its run failed."""

    exit_code = FAILURE_EXIT


class DiskFullError(OutputError):
    """A file system ran out of space (``ENOSPC``, ``EDQUOT``) while geoseg wrote to it."""

    exit_code = FAILURE_EXIT


class WorkFolderBusyError(GeosegError, BlockingIOError):
    """Another run holds the lock of the work folder a run needs."""

    exit_code = FAILURE_EXIT


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""``errno`` values that mean a write found no room (full disk, quota, file-size limit)."""


def detached(error: GeosegError) -> GeosegError:
    """A copy of ``error`` without its cause, context and traceback.

    What a Dask task raises travels to the client pickled with its whole
    chain; a GDAL or SQLite exception in that chain may not unpickle, and
    distributed then re-raises a bare ``Exception`` holding a repr. The copy
    keeps the type and the message, which is all the client shows.
    """
    return type(error)(*error.args)


def from_os_error(error: OSError, path: Path) -> GeosegError:
    """The geoseg error for an ``OSError`` met while writing ``path``.

    A full disk or quota says "no space left on device" and names the folder
    being filled; a read-only or forbidden folder asks for a writable one.
    """
    reason = error.strerror or str(error)
    folder = path.parent
    if error.errno in DISK_FULL_ERRNOS:
        return DiskFullError(
            f"{path}: no space left on device in {folder} ({reason}); free some space "
            "or choose a folder on another file system"
        )
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return OutputError(
            f"{path}: the folder {folder} is not writable ({reason}); choose another"
        )
    return OutputError(f"{path}: writing failed ({reason})")
