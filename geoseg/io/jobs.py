"""Tables of scheduled jobs: a run's polygons and per-region table, and the cumulative layers.

GeoPackages are written with a fixed GDAL timestamp (``OGR_CURRENT_DATE``) so
the same content gives the same bytes, which lets a retried run reproduce the
outputs of an uninterrupted one exactly. Run folders are staged and published
with :mod:`geoseg.io.staging`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

from geoseg.errors import VectorReadError
from geoseg.io.atomic import atomic_path
from geoseg.io.vector import fixed_change_time

POLYGONS_FILE = "deforestation.gpkg"
POLYGONS_LAYER = "deforestation"
REGIONS_FILE = "loss_by_region.csv"
TIMESERIES_LAYER = "loss_by_region"
FLAGS_FILE = "flags.csv"
FLAGS_LAYER = "flags"
FLAG_COLUMNS = ("code", "where", "message")


def _gdal_timestamp(moment: datetime) -> str:
    """``moment`` as the change time the jobs' GeoPackages record (milliseconds included)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _write_layer(frame: pd.DataFrame, path: Path, layer: str, append: bool) -> None:
    if isinstance(frame, gpd.GeoDataFrame):
        pyogrio.write_dataframe(
            frame,
            path,
            layer=layer,
            driver="GPKG",
            append=append,
            promote_to_multi=True,
            geometry_type="MultiPolygon",
        )
    else:
        pyogrio.write_dataframe(frame, path, layer=layer, driver="GPKG", append=append)


def write_run_tables(
    folder: Path, polygons: gpd.GeoDataFrame, regions: pd.DataFrame, timestamp: datetime
) -> tuple[Path, Path]:
    """Write a run's deforestation polygons (GeoPackage) and per-region table (CSV)."""
    polygons_path = folder / POLYGONS_FILE
    regions_path = folder / REGIONS_FILE
    with fixed_change_time(_gdal_timestamp(timestamp)), atomic_path(polygons_path) as temporary:
        _write_layer(polygons, temporary, POLYGONS_LAYER, append=False)
    with atomic_path(regions_path) as temporary:
        regions.to_csv(temporary, index=False, lineterminator="\n")
    return polygons_path, regions_path


def read_run_tables(folder: Path) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Read back the tables :func:`write_run_tables` wrote into ``folder``."""
    polygons_path = folder / POLYGONS_FILE
    regions_path = folder / REGIONS_FILE
    try:
        polygons = pyogrio.read_dataframe(polygons_path, layer=POLYGONS_LAYER)
        regions = pd.read_csv(regions_path, dtype={"region_id": str})
    except (OSError, pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as error:
        raise VectorReadError(
            f"{folder}: cannot read the run's tables ({error}); the run folder is damaged, "
            "remove it and its row in the jobs database to run the period again"
        ) from None
    return polygons, regions


def write_run_flags(folder: Path, flags: pd.DataFrame) -> Path:
    """Write a run's quality flags (``code``, ``where``, ``message`` and the period) as CSV."""
    path = folder / FLAGS_FILE
    with atomic_path(path) as temporary:
        flags.to_csv(temporary, index=False, lineterminator="\n")
    return path


def read_run_flags(folder: Path) -> pd.DataFrame:
    """The flags :func:`write_run_flags` wrote (empty for a run folder without them)."""
    path = folder / FLAGS_FILE
    if not path.exists():
        return pd.DataFrame({name: pd.Series(dtype=str) for name in FLAG_COLUMNS})
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def write_cumulative(
    path: Path,
    polygons: gpd.GeoDataFrame,
    timeseries: pd.DataFrame,
    flags: pd.DataFrame,
    timestamp: datetime,
) -> None:
    """Write the cumulative GeoPackage: polygons with period and status, time series, flags."""
    with fixed_change_time(_gdal_timestamp(timestamp)), atomic_path(path) as temporary:
        _write_layer(polygons, temporary, POLYGONS_LAYER, append=False)
        _write_layer(timeseries, temporary, TIMESERIES_LAYER, append=True)
        _write_layer(flags, temporary, FLAGS_LAYER, append=True)
