"""Polygon rows as Arrow tables: attributes plus little-endian WKB, ready for GDAL.

A :func:`feature_table` is plain in-memory data (built anywhere, e.g. on a Dask
worker) that the GeoPackage writer (:mod:`geoseg.io.vector`) hands to GDAL as
it is. Its geometry is the WKB column :data:`GEOMETRY_FIELD` and its CRS is kept
as WKT in the schema metadata. A layer's geometry type is MultiPolygon as soon
as one row is one; its Polygons are then promoted to one-part MultiPolygons,
as pyogrio does for a GeoDataFrame.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import shapely
from numpy.typing import NDArray

GEOMETRY_FIELD = "geometry"
"""Name of the WKB geometry column of a feature table."""

_CRS_KEY = "geoseg:crs"
_WKB_POLYGON = 3
_WKB_MULTIPOLYGON = 6


def layer_name(text: str) -> str:
    """A GeoPackage layer name from free text: letters, digits and underscores."""
    cleaned = "".join(character if character.isalnum() else "_" for character in text)
    return cleaned.strip("_") or "polygons"


def feature_table(frame: gpd.GeoDataFrame) -> pa.Table:
    """The rows of ``frame`` as an Arrow table for the GeoPackage writer.

    :meth:`geoseg.io.vector.GeoPackageWriter.write_table` writes it as it is.

    Attribute columns keep their order and types (NaN floats become nulls, as
    pyogrio writes them), except that every text column is ``large_string``:
    pandas gives ``string``, ``large_string`` or, for an empty object column,
    ``null`` depending on the dtype, and the tables of one layer must agree.
    The geometry becomes the little-endian WKB column ``geometry`` and the CRS
    is kept in the schema metadata. Building it is plain in-memory work, so
    Dask workers can do it and ship the table to the process that writes the
    file.
    """
    geometry_name = frame.geometry.name
    attributes = pd.DataFrame(frame.drop(columns=geometry_name), copy=False)
    table = pa.Table.from_pandas(attributes, preserve_index=False)
    for index, field in enumerate(table.schema):
        if pa.types.is_null(field.type) or pa.types.is_string(field.type):
            text = table.column(index).cast(pa.large_string())
            table = table.set_column(index, field.name, text)
    wkb = shapely.to_wkb(np.asarray(frame.geometry.array), byte_order=1)
    table = table.append_column(GEOMETRY_FIELD, pa.array(wkb, type=pa.binary()))
    crs = "" if frame.crs is None else frame.crs.to_wkt()
    return table.replace_schema_metadata({_CRS_KEY: crs})


def _wkb_type_codes(table: pa.Table) -> NDArray[np.uint32]:
    """The geometry type code of every row's little-endian WKB."""
    codes = []
    for chunk in table.column(GEOMETRY_FIELD).chunks:
        if len(chunk) == 0:
            continue
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)[
            chunk.offset : chunk.offset + len(chunk)
        ]
        data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)
        starts = offsets.astype(np.int64) + 1
        code = np.zeros(len(chunk), dtype=np.uint32)
        for byte in range(4):
            code |= data[starts + byte].astype(np.uint32) << np.uint32(8 * byte)
        codes.append(code)
    return np.concatenate(codes) if codes else np.zeros(0, dtype=np.uint32)


def _promoted_to_multi(table: pa.Table, codes: NDArray[np.uint32]) -> pa.Table:
    """``table`` with every Polygon turned into a one-part MultiPolygon."""
    geometries = shapely.from_wkb(table.column(GEOMETRY_FIELD).to_numpy(zero_copy_only=False))
    single = codes == _WKB_POLYGON
    geometries[single] = shapely.multipolygons(np.atleast_2d(geometries[single]), axis=0)
    wkb = pa.array(shapely.to_wkb(geometries, byte_order=1), type=pa.binary())
    return table.set_column(table.schema.get_field_index(GEOMETRY_FIELD), GEOMETRY_FIELD, wkb)


def layer_geometry_type(table: pa.Table) -> str:
    """``"MultiPolygon"`` when a row of ``table`` is one, else ``"Polygon"``."""
    codes = _wkb_type_codes(table)
    return "MultiPolygon" if bool((codes == _WKB_MULTIPOLYGON).any()) else "Polygon"


def matching_layer_type(table: pa.Table, geometry_type: str) -> pa.Table:
    """``table`` with Polygons promoted to MultiPolygons when the layer holds those."""
    codes = _wkb_type_codes(table)
    if geometry_type == "MultiPolygon" and bool((codes == _WKB_POLYGON).any()):
        return _promoted_to_multi(table, codes)
    return table


def table_crs(schema: pa.Schema) -> str | None:
    """The CRS (WKT) that :func:`feature_table` kept in ``schema`` (None when it had none)."""
    return (schema.metadata or {}).get(_CRS_KEY.encode(), b"").decode() or None
