"""Files of scheduled jobs: run folders published atomically, run tables, cumulative layers.

A run writes into a staging folder beside its final folder and is renamed into
place in one step, so a run folder is either complete or absent. GeoPackages
are written with a fixed GDAL timestamp (``OGR_CURRENT_DATE``) so the same
content gives the same bytes, which lets a retried run reproduce the outputs
of an uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio

from geoseg.errors import OutputError, VectorReadError
from geoseg.io.atomic import atomic_path

POLYGONS_FILE = "deforestation.gpkg"
POLYGONS_LAYER = "deforestation"
REGIONS_FILE = "loss_by_region.csv"
TIMESERIES_LAYER = "loss_by_region"
_STAGING_MARK = ".partial-"


@contextlib.contextmanager
def fixed_gdal_timestamp(moment: datetime) -> Iterator[None]:
    """Make GDAL stamp GeoPackages with ``moment`` instead of the wall clock."""
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": stamp})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})


def staging_folder(final: Path, attempt: int) -> Path:
    """Create an empty staging folder for ``final``, removing leftovers of earlier attempts.

    Only one process runs a job at a time (the state store sees to it), so
    leftovers belong to dead attempts.
    """
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{parent}: cannot create the runs folder ({error})") from None
    for leftover in parent.glob(f".{final.name}{_STAGING_MARK}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    staging = parent / f".{final.name}{_STAGING_MARK}{attempt}"
    staging.mkdir()
    return staging


def work_folder(final: Path) -> Path:
    """The folder kept across attempts of the run published at ``final`` (created if needed)."""
    folder = final.parent / f".{final.name}.work"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def remove_folder(folder: Path) -> None:
    """Delete ``folder`` and everything in it (nothing when it does not exist)."""
    shutil.rmtree(folder, ignore_errors=True)


def copy_files(paths: Sequence[Path], folder: Path) -> tuple[Path, ...]:
    """Copy ``paths`` into ``folder`` (same names), each atomically; return the copies."""
    copies = []
    for path in paths:
        target = folder / path.name
        with atomic_path(target) as temporary:
            shutil.copyfile(path, temporary)
        copies.append(target)
    return tuple(copies)


def publish_folder(staging: Path, final: Path) -> None:
    """Flush every file of ``staging`` to disk and rename it to ``final`` in one step."""
    if final.exists():
        raise OutputError(f"{final}: a run folder already exists; earlier runs are never replaced")
    for path in sorted(staging.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    os.rename(staging, final)
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Write ``content`` as sorted, indented JSON, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", "utf-8")


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object written by :func:`write_json`."""
    try:
        content = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as error:
        raise OutputError(f"{path}: cannot read the run manifest ({error})") from None
    if not isinstance(content, dict):
        raise OutputError(f"{path}: the run manifest is not a JSON object")
    return content


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
    with fixed_gdal_timestamp(timestamp), atomic_path(polygons_path) as temporary:
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


def write_cumulative(
    path: Path, polygons: gpd.GeoDataFrame, timeseries: pd.DataFrame, timestamp: datetime
) -> None:
    """Write the cumulative GeoPackage: all polygons with their period, and the time series."""
    with fixed_gdal_timestamp(timestamp), atomic_path(path) as temporary:
        _write_layer(polygons, temporary, POLYGONS_LAYER, append=False)
        _write_layer(timeseries, temporary, TIMESERIES_LAYER, append=True)
