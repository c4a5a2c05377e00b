"""GeoParquet 1.1 polygon files, written atomically from the rows of a GeoPackage layer.

The rows are the Arrow tables of :func:`geoseg.vector.features.feature_table`
(attributes, a little-endian WKB ``geometry`` column, the CRS as WKT in the
schema metadata), the same that :mod:`geoseg.io.vector` hands to GDAL, so a
GeoParquet file has exactly the attribute columns and rows of the GeoPackage
layer. Each row also gets the GeoParquet 1.1 covering column ``bbox``
(``xmin``, ``ymin``, ``xmax``, ``ymax`` of its geometry), so readers can skip
row groups by area. Tables are written as they arrive (one row group each);
the ``geo`` metadata (CRS as PROJJSON, geometry types, overall bbox) is added
to the file footer when every row is known. The file is built beside the
target and renamed over it only when complete (:mod:`geoseg.io.atomic`).
:func:`read_geoparquet` reads such a file (or any GeoParquet file) back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from geoseg.errors import OutputError, VectorReadError
from geoseg.io.atomic import atomic_path
from geoseg.vector.features import GEOMETRY_FIELD, table_crs

GEOPARQUET_VERSION = "1.1.0"
"""The GeoParquet specification version written."""
BBOX_COLUMN = "bbox"
"""Name of the covering bbox column."""
MEDIA_TYPE = "application/vnd.apache.parquet"
"""The media type of a (Geo)Parquet file."""

_BBOX_TYPE = pa.struct(
    [(name, pa.float64()) for name in ("xmin", "ymin", "xmax", "ymax")],
)
_TYPE_NAMES = {
    0: "Point",
    1: "LineString",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}


def _projjson(wkt: str | None) -> dict[str, Any] | None:
    """The CRS given as WKT as a PROJJSON object (None: no CRS)."""
    if not wkt:
        return None
    from pyproj import CRS

    projjson: dict[str, Any] = CRS.from_wkt(wkt).to_json_dict()
    return projjson


class GeoParquetWriter:
    """Writes :func:`~geoseg.vector.features.feature_table` rows into one GeoParquet file.

    :func:`write_geoparquet` uses one. Tables with rows must have the columns
    and types of the first one with rows; empty tables are skipped (the first
    one gives the schema when every table is empty).
    """

    def __init__(self, path: Path, final: Path) -> None:
        self._path = path
        self._final = final
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._crs: str | None = None
        self._types: set[str] = set()
        self._bounds = np.array([np.inf, np.inf, -np.inf, -np.inf])
        self._empty: pa.Table | None = None
        self.count = 0

    def _open(self, table: pa.Table) -> pq.ParquetWriter:
        """Start the file with the columns of ``table`` plus the covering column.

        The Arrow schema is not stored: readers take the columns from the
        Parquet schema and the ``geo`` metadata added at :meth:`close`.
        """
        self._schema = table.schema.remove_metadata()
        self._crs = table_crs(table.schema)
        self._writer = pq.ParquetWriter(
            self._path, self._schema.append(pa.field(BBOX_COLUMN, _BBOX_TYPE)), store_schema=False
        )
        if len(table) == 0:
            self._writer.write_table(self._with_bbox(table, np.zeros((0, 4))))
        return self._writer

    @staticmethod
    def _with_bbox(table: pa.Table, bounds: np.ndarray[Any, Any]) -> pa.Table:
        columns = [pa.array(bounds[:, axis], type=pa.float64()) for axis in range(4)]
        covering = pa.StructArray.from_arrays(columns, fields=list(_BBOX_TYPE))
        return table.replace_schema_metadata(None).append_column(BBOX_COLUMN, covering)

    def write_table(self, table: pa.Table) -> None:
        """Append the rows of ``table`` (one row group), with their covering bbox."""
        if len(table) == 0:  # an empty table only carries a schema, perhaps of other dtypes
            if self._empty is None:
                self._empty = table
            return
        writer = self._open(table) if self._writer is None else self._writer
        if not table.schema.remove_metadata().equals(self._schema):
            raise OutputError(
                f"{self._final}: the rows changed columns or types mid-stream "
                f"({table.schema} after {self._schema})"
            )
        geometries = shapely.from_wkb(table.column(GEOMETRY_FIELD).to_numpy(zero_copy_only=False))
        bounds = shapely.bounds(geometries).reshape(-1, 4)
        writer.write_table(self._with_bbox(table, bounds))
        type_ids = np.unique(shapely.get_type_id(geometries))
        self._types.update(_TYPE_NAMES[int(code)] for code in type_ids if code >= 0)
        if not np.isnan(bounds).all():
            self._bounds[:2] = np.fmin(self._bounds[:2], np.nanmin(bounds[:, :2], axis=0))
            self._bounds[2:] = np.fmax(self._bounds[2:], np.nanmax(bounds[:, 2:], axis=0))
        self.count += len(table)

    def geo_metadata(self) -> dict[str, Any]:
        """The ``geo`` file metadata of the rows written so far (GeoParquet 1.1)."""
        column: dict[str, Any] = {
            "encoding": "WKB",
            "geometry_types": sorted(self._types),
            "crs": _projjson(self._crs),
            "covering": {
                "bbox": {name: [BBOX_COLUMN, name] for name in ("xmin", "ymin", "xmax", "ymax")}
            },
        }
        if np.isfinite(self._bounds).all():
            column["bbox"] = [float(value) for value in self._bounds]
        return {
            "version": GEOPARQUET_VERSION,
            "primary_column": GEOMETRY_FIELD,
            "columns": {GEOMETRY_FIELD: column},
        }

    def close(self) -> None:
        """Add the ``geo`` metadata to the footer and close the file."""
        writer = self._writer
        if writer is None and self._empty is not None:  # no rows: the schema only
            writer = self._open(self._empty)
        if writer is None:
            raise OutputError(f"{self._final}: no rows at all (not even a schema) were given")
        writer.add_key_value_metadata({"geo": json.dumps(self.geo_metadata())})
        writer.close()
        self._writer = None

    def abort(self) -> None:
        """Close the file after a failure (the caller deletes it)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def write_geoparquet(path: str | Path, tables: Iterable[pa.Table]) -> int:
    """Write feature-table rows into the GeoParquet file ``path``, atomically.

    Parameters
    ----------
    path
        The output file; it appears there complete or not at all.
    tables
        :func:`~geoseg.vector.features.feature_table` rows, written as they
        arrive (an exception raised while producing them propagates and
        leaves nothing at ``path``).

    Returns
    -------
    int
        Rows written.
    """
    final = Path(path)
    with atomic_path(final) as temporary:
        writer = GeoParquetWriter(temporary, final)
        try:
            for table in tables:
                writer.write_table(table)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    return writer.count


def read_geoparquet(path: str | Path, *, columns: Sequence[str] = ()) -> gpd.GeoDataFrame:
    """Read a GeoParquet file into a GeoDataFrame (with geopandas, through pyarrow).

    Parameters
    ----------
    path
        The file.
    columns
        Fields that must exist (all are read).

    Raises
    ------
    VectorReadError
        A missing or unreadable file, one without ``geo`` metadata, a missing
        field, or no CRS.
    """
    path = Path(path)
    if not path.exists():
        raise VectorReadError(f"{path}: no such file")
    try:
        frame = gpd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise VectorReadError(f"{path}: not a readable GeoParquet file ({reason})") from None
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        fields = [name for name in frame.columns if name != frame.geometry.name]
        raise VectorReadError(f"{path}: no field(s) {missing}; the file has fields {fields}")
    if frame.crs is None:
        raise VectorReadError(f"{path}: the file has no CRS; write it with one")
    return frame
