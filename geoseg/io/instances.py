"""Writing instance and panoptic rasters (COG) and instance polygons (GeoPackage, GeoParquet).

An instance raster has two uint32 bands on the scene grid: ``instance_id``
(0: no object) and ``class_id`` (the card's class id of the object; 0 where
there is none), tag ``GEOSEG_TASK=instance`` and ``GEOSEG_CLASS_NAMES``. A
panoptic raster has the same two bands (``class_id`` then also holds the stuff
classes) and tag ``GEOSEG_TASK=panoptic``. Rasters are written window by window
into a GeoTIFF beside the output, copied into a COG (LZW, nearest overviews)
and renamed into place; nothing half-written is left at the output path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.shutil
from numpy.typing import NDArray
from rasterio.errors import RasterioIOError

from geoseg.errors import OutputError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.io.atomic import atomic_path
from geoseg.io.geoparquet import read_geoparquet, write_geoparquet
from geoseg.io.vector import open_geopackage, polygon_format, read_vector
from geoseg.predict.instances import Detection
from geoseg.vector.features import feature_table, matching_layer_type

INSTANCE_BANDS = ("instance_id", "class_id")
TASK_TAG = "GEOSEG_TASK"
INSTANCES_LAYER = "instances"
INSTANCE_COLUMNS = ("class", "area_m2")
"""The fields instance counting reads from the polygons (besides the geometry)."""


def write_id_cog(
    path: Path,
    grid: RasterGrid,
    windows: Iterable[tuple[PixelWindow, NDArray[np.uint32], NDArray[np.uint32]]],
    *,
    task: str,
    class_names: Mapping[int, str],
) -> None:
    """Write ``(window, instance ids, class ids)`` pieces covering ``grid`` as a COG.

    Raises
    ------
    OutputError
        The folder is missing or GDAL cannot write there.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"{path}: the folder {path.parent} does not exist; create it first")
    profile = {
        "driver": "GTiff",
        "height": grid.height,
        "width": grid.width,
        "count": 2,
        "dtype": "uint32",
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": None,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "zstd",
        "zstd_level": 1,
        "bigtiff": "IF_SAFER",
    }
    tags = {
        TASK_TAG: task,
        "GEOSEG_CLASS_NAMES": json.dumps({str(k): v for k, v in sorted(class_names.items())}),
    }
    mosaic = path.with_name(f".{path.name}.mosaic.tif")
    try:
        with atomic_path(path) as final:
            with rasterio.open(mosaic, "w", **profile) as dataset:
                for window, ids, classes in windows:
                    dataset.write(np.stack([ids, classes]), window=window.to_rasterio())
                dataset.descriptions = INSTANCE_BANDS
                dataset.update_tags(**tags)
            rasterio.shutil.copy(
                mosaic,
                final,
                driver="COG",
                compress="LZW",
                blocksize=512,
                overview_resampling="NEAREST",
                bigtiff="IF_SAFER",
            )
    except RasterioIOError as error:
        raise OutputError(f"{path}: cannot write the raster ({error})") from None
    finally:
        mosaic.unlink(missing_ok=True)


def write_instance_polygons(path: Path, frame: gpd.GeoDataFrame) -> None:
    """Write the instance polygons as layer ``instances`` of a new GeoPackage (atomically).

    A ``.parquet`` path gets the same rows as GeoParquet (MultiPolygons, as in
    the GeoPackage).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"{path}: the folder {path.parent} does not exist; create it first")
    if polygon_format(path) == "parquet":
        write_geoparquet(path, [matching_layer_type(feature_table(frame), "MultiPolygon")])
        return
    with atomic_path(path) as temporary:
        frame.to_file(
            temporary,
            layer=INSTANCES_LAYER,
            driver="GPKG",
            engine="pyogrio",
            promote_to_multi=True,
            geometry_type="MultiPolygon",
        )


def add_instances_layer(
    geopackage: Path,
    frame: gpd.GeoDataFrame,
    *,
    layer: str = INSTANCES_LAYER,
    timestamp: str | None = None,
) -> None:
    """Add (or replace) the instance polygons as ``layer`` of an existing GeoPackage.

    The other layers are kept; the file is replaced atomically
    (:func:`geoseg.io.vector.open_geopackage`), with ``timestamp`` as the
    layer's change time.
    """
    with open_geopackage(geopackage, timestamp=timestamp) as writer:
        writer.write_table(layer, matching_layer_type(feature_table(frame), "MultiPolygon"))


def read_instances(path: str | Path) -> gpd.GeoDataFrame:
    """Instance polygons (``geoseg predict --polygons`` with an instance model).

    A GeoPackage's layer ``instances``, or a ``.parquet`` file (GeoParquet).

    Raises
    ------
    VectorReadError
        A missing file, no ``instances`` layer, or no ``class`` / ``area_m2`` field.
    """
    if Path(path).suffix.lower() == ".parquet":
        return read_geoparquet(path, columns=INSTANCE_COLUMNS)
    return read_vector(path, INSTANCES_LAYER, columns=INSTANCE_COLUMNS)


def read_id_raster(
    path: Path, window: PixelWindow | None = None
) -> tuple[NDArray[np.int64], NDArray[np.int64], dict[str, str]]:
    """Instance ids, class ids and tags of an instance or panoptic raster.

    A one-band raster is read as instance ids of one thing class (class id 1
    where the id is not 0): the form of reference rasters such as
    ``buildings_atlanta/instances.tif``.
    """
    from geoseg.errors import RasterReadError

    try:
        with rasterio.open(path) as dataset:
            area = None if window is None else window.to_rasterio()
            ids = dataset.read(1, window=area).astype(np.int64)
            if dataset.count >= 2:
                classes = dataset.read(2, window=area).astype(np.int64)
            else:
                classes = (ids > 0).astype(np.int64)
            return ids, classes, dict(dataset.tags())
    except RasterioIOError as error:
        raise RasterReadError(f"{path}: not a readable raster ({error})") from None


def detections_path(work_dir: Path, batch_number: int, tag: str) -> Path:
    """Work-directory file of the detections of batch ``batch_number`` (``tag``: their settings)."""
    return work_dir / f"detections_{tag}_{batch_number:07d}.npz"


def write_detections(path: Path, detections: Sequence[Detection]) -> None:
    """Keep a batch's detections in the work directory (atomically, not fsynced).

    One ``.npz`` without pickles: per detection tile, class, window and score,
    and the masks' pixels, concatenated in order.
    """
    meta = np.array(
        [
            (d.tile, d.class_index, d.window.row, d.window.col, d.window.height, d.window.width)
            for d in detections
        ],
        dtype=np.int64,
    ).reshape(-1, 6)
    scores = np.array([d.score for d in detections], dtype=np.float64)
    masks = (
        np.concatenate([d.mask.ravel() for d in detections])
        if detections
        else np.zeros(0, dtype=bool)
    )
    with atomic_path(path, sync=False) as temporary, temporary.open("wb") as handle:
        np.savez(handle, meta=meta, scores=scores, masks=masks)


def read_detections(path: Path) -> list[Detection] | None:
    """The detections :func:`write_detections` kept; None when there is no (readable) file."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            meta, scores, masks = stored["meta"], stored["scores"], stored["masks"]
    except (OSError, ValueError, KeyError):
        return None
    found = []
    offset = 0
    for (tile, class_index, row, col, height, width), score in zip(meta, scores, strict=True):
        size = int(height * width)
        found.append(
            Detection(
                tile=int(tile),
                class_index=int(class_index),
                score=float(score),
                window=PixelWindow(int(row), int(col), int(height), int(width)),
                mask=masks[offset : offset + size].reshape(int(height), int(width)).copy(),
            )
        )
        offset += size
    return found
