"""Files of ``geoseg run`` besides its staging: GeoPackage attribute tables, label previews.

Staging and publishing are :mod:`geoseg.io.staging`; the quicklook PNG is
written by :func:`geoseg.io.report.save_png`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError

from geoseg.errors import OutputError, RasterReadError
from geoseg.io.raster import open_raster
from geoseg.io.vector import fixed_change_time


def write_attribute_table(
    path: str | Path, layer: str, frame: pd.DataFrame, *, timestamp: str | None = None
) -> None:
    """Add (or replace) a non-spatial table ``layer`` in the GeoPackage ``path``.

    ``path`` is a staging file the caller publishes when complete. ``timestamp``
    is the change time recorded (default: the clock), as for
    :func:`geoseg.io.vector.open_geopackage`.
    """
    import pyogrio
    from pyogrio.errors import DataSourceError

    try:
        with fixed_change_time(timestamp):
            if Path(path).exists() and layer in {name for name, _ in pyogrio.list_layers(path)}:
                pyogrio.write_dataframe(frame, path, layer=layer, driver="GPKG", append=False)
            else:
                pyogrio.write_dataframe(frame, path, layer=layer, driver="GPKG")
    except (DataSourceError, OSError) as error:
        raise OutputError(f"{path}: writing table {layer!r} failed ({error})") from None


def read_labels_preview(
    path: str | Path, shape: tuple[int, int]
) -> tuple[NDArray[np.uint8], int | None]:
    """Band 1 of a label raster resampled (nearest) to ``shape``, and its nodata value."""
    try:
        with open_raster(path) as dataset:
            data = dataset.read(1, out_shape=shape, resampling=Resampling.nearest)
            nodata = None if dataset.nodata is None else int(dataset.nodata)
    except RasterioIOError as error:
        raise RasterReadError(f"{path}: cannot read the label raster ({error})") from None
    return data.astype(np.uint8), nodata
