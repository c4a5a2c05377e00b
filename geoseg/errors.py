"""The exception hierarchy of geoseg.

Every error geoseg raises on purpose derives from :class:`GeosegError`. Each
subclass also inherits the matching builtin (``ValueError``, ``OSError``,
``KeyError``...) so that callers who catch builtins keep working. Messages name
the file or value at fault and say how to fix it.
"""

from __future__ import annotations


class GeosegError(Exception):
    """Root of every error raised by geoseg on purpose."""


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
