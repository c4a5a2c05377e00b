"""Files of a run: its state and manifest JSON, GeoPackage tables, PNGs, label previews.

A run stages every output in its work directory and moves each one to its
final path only when complete (:func:`publish`), so a killed run never leaves a
half-written file at a final path.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
from numpy.typing import NDArray
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError

from geoseg.errors import OutputError, RasterReadError
from geoseg.io.atomic import atomic_path

_DATE_OPTION = "OGR_CURRENT_DATE"


def read_json(path: str | Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when the file does not exist or is unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON with sorted keys, atomically."""
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


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


def save_png(figure: Any, path: str | Path, *, dpi: int) -> Path:
    """Save a matplotlib figure as PNG atomically (no varying metadata)."""
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi, metadata={"Software": None})
    return path


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


def publish(staged: str | Path, final: str | Path) -> Path:
    """Move a complete staged file to ``final`` atomically (a copy first across filesystems)."""
    staged, final = Path(staged), Path(final)
    if not staged.exists():
        raise OutputError(f"{staged}: nothing was staged for {final}")
    with atomic_path(final) as temporary:
        shutil.copyfile(staged, temporary)
    return final


def remove_file(path: str | Path) -> None:
    """Delete ``path`` if it exists (a stale staging file of a killed attempt)."""
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()


def remove_tree(path: str | Path) -> None:
    """Delete a work directory and everything in it (nothing when it is absent)."""
    shutil.rmtree(path, ignore_errors=True)


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
