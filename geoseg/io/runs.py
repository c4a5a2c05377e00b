"""Files of ``geoseg run`` besides its staging: GeoPackage attribute tables, label previews.

Staging and publishing are :mod:`geoseg.io.staging`; the quicklook PNG is
written by :func:`geoseg.io.report.save_png`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from numpy.typing import NDArray
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError

from geoseg.errors import OutputError, RasterReadError

_DATE_OPTION = "OGR_CURRENT_DATE"


@contextlib.contextmanager
def fixed_file_dates(timestamp: str) -> Iterator[None]:
    """GeoPackages written inside this block record ``timestamp`` as their change time.

    GDAL stamps ``gpkg_contents.last_change`` with the current time unless its
    ``OGR_CURRENT_DATE`` option is set; fixing it makes repeated writes of the
    same layers byte-identical.
    """
    from pyogrio import get_gdal_config_option, set_gdal_config_options

    previous_env = os.environ.get(_DATE_OPTION)
    previous = get_gdal_config_option(_DATE_OPTION)
    os.environ[_DATE_OPTION] = timestamp
    set_gdal_config_options({_DATE_OPTION: timestamp})
    try:
        yield
    finally:
        set_gdal_config_options({_DATE_OPTION: previous})
        if previous_env is None:
            os.environ.pop(_DATE_OPTION, None)
        else:
            os.environ[_DATE_OPTION] = previous_env


def write_attribute_table(path: str | Path, layer: str, frame: pd.DataFrame) -> None:
    """Add (or replace) a non-spatial table ``layer`` in the GeoPackage ``path``.

    ``path`` is a staging file the caller publishes when complete.
    """
    import pyogrio
    from pyogrio.errors import DataSourceError

    try:
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
        with rasterio.open(path) as dataset:
            data = dataset.read(1, out_shape=shape, resampling=Resampling.nearest)
            nodata = None if dataset.nodata is None else int(dataset.nodata)
    except RasterioIOError as error:
        raise RasterReadError(f"{path}: cannot read the label raster ({error})") from None
    return data.astype(np.uint8), nodata


def pin_style_times(path: str | Path, timestamp: str) -> None:
    """Set every ``layer_styles.update_time`` of a staged GeoPackage to ``timestamp``.

    Style rows are stamped with the time they were written; pinning them to
    the run's time keeps a resumed run's GeoPackage byte-identical.
    """
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        if "layer_styles" in tables:
            with connection:
                connection.execute("UPDATE layer_styles SET update_time = ?", (timestamp,))
    finally:
        connection.close()
