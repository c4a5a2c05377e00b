"""Vector files: reading regions, and writing GeoPackages atomically with QGIS styles.

A GeoPackage is always built at a temporary path beside the target (a copy of
the existing file, if any) and renamed over it only when every layer and style
has been written, so an error mid-write leaves the previous file byte-identical.
Writing a layer replaces only that layer; the file's other layers and their
styles are kept. Layers get the GeoPackage R-tree spatial index, and QGIS
styles go into the standard ``layer_styles`` table, which QGIS applies when
the layer is opened. The rows arrive as Arrow tables
(:mod:`geoseg.vector.features`), the styles as QML text (:mod:`geoseg.vector.style`).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyarrow as pa
import pyogrio
from pyogrio.errors import DataLayerError, DataSourceError

from geoseg.errors import OutputError, VectorReadError
from geoseg.io.atomic import atomic_path
from geoseg.vector.features import (
    GEOMETRY_FIELD,
    feature_table,
    layer_geometry_type,
    matching_layer_type,
    table_crs,
)

STYLES_LAYER = "layer_styles"
POLYGON_FORMATS = {".gpkg": "gpkg", ".parquet": "parquet"}
"""Polygon output formats by file suffix: GeoPackage, GeoParquet (:mod:`geoseg.io.geoparquet`)."""
_SYNC_OPTION = "OGR_SQLITE_SYNCHRONOUS"
_DATE_OPTION = "OGR_CURRENT_DATE"
_STYLE_COLUMNS = (
    "f_table_catalog",
    "f_table_schema",
    "f_table_name",
    "f_geometry_column",
    "styleName",
    "styleQML",
    "styleSLD",
    "useAsDefault",
    "description",
    "owner",
    "ui",
    "update_time",
)


def polygon_format(path: str | Path) -> str:
    """``"gpkg"`` or ``"parquet"``: the polygon output format ``path``'s suffix names.

    Raises
    ------
    OutputError
        Any other suffix (checked before any work starts).
    """
    suffix = Path(path).suffix.lower()
    if suffix not in POLYGON_FORMATS:
        raise OutputError(
            f"{path}: unknown polygon output format {suffix or '(no suffix)'!r}; name the file "
            ".gpkg (GeoPackage) or .parquet (GeoParquet)"
        )
    return POLYGON_FORMATS[suffix]


def _write_table(table: pa.Table, path: Path, layer: str, *, append: bool) -> None:
    """Write (or append) one layer with pyogrio; split out so tests can inject failures."""
    geometry_type = layer_geometry_type(table)
    _write_arrow(matching_layer_type(table, geometry_type), path, layer, geometry_type, append)


def _write_arrow(data: Any, path: Path, layer: str, geometry_type: str, append: bool) -> None:
    """One pyogrio write of Arrow rows (a table or a stream of batches)."""
    pyogrio.write_arrow(
        data,
        path,
        layer=layer,
        driver="GPKG",
        append=append,
        geometry_name=GEOMETRY_FIELD,
        geometry_type=geometry_type,
        crs=table_crs(data.schema),
        layer_options=None if append else {"SPATIAL_INDEX": "YES"},
    )


class GeoPackageWriter:
    """Writes layers and styles into a GeoPackage being built at a temporary path.

    Obtain one from :func:`open_geopackage`. The first write to a layer
    replaces any layer of that name; later writes append to it. Rows are
    buffered and written ``buffer_rows`` at a time (each GeoPackage write is
    a transaction with a fixed cost, and appended rows update the spatial
    index one by one); :meth:`write_stream` writes a whole layer in one pass.
    """

    def __init__(
        self, path: Path, final: Path, *, buffer_rows: int = 100_000, timestamp: str | None = None
    ) -> None:
        self._path = path
        self._final = final
        self._buffer_rows = buffer_rows
        self._timestamp = timestamp
        self._started: set[str] = set()
        self._buffers: dict[str, list[pa.Table]] = {}
        self._counts: dict[str, int] = {}
        self._styles: dict[str, str] = {}

    def write(self, layer: str, frame: gpd.GeoDataFrame) -> None:
        """Add ``frame`` to ``layer`` (its first write replaces any layer of that name)."""
        self.write_table(layer, feature_table(frame))

    def write_table(self, layer: str, table: pa.Table) -> None:
        """Add the rows of a :func:`feature_table` to ``layer``, like :meth:`write`."""
        self._counts[layer] = self._counts.get(layer, 0) + len(table)
        buffer = self._buffers.setdefault(layer, [])
        if buffer and len(table) == 0:
            return
        if buffer and len(buffer[0]) == 0:  # an empty table only carries the schema
            buffer.clear()
        buffer.append(table)
        if sum(len(part) for part in buffer) >= self._buffer_rows:
            self._flush(layer)

    def write_stream(self, layer: str, tables: Iterable[pa.Table]) -> None:
        """Write a whole layer from :func:`feature_table` rows that arrive one table at a time.

        Each table is written as it comes (nothing is buffered) and the layer
        is written in a single pass, so its spatial index is bulk-built once,
        as for one :meth:`write`, instead of being updated row by row as
        appends do. Tables with rows must have the columns and types of the
        first one with rows, whose geometry type the layer takes; empty tables
        are skipped (the first one gives the schema when every table is
        empty). ``layer`` replaces any layer of that name and must not have
        been written by this writer yet. An exception raised while producing
        the tables propagates unchanged.
        """
        if layer in self._counts:
            raise OutputError(f"{self._final}: layer {layer!r} is already being written")
        self._counts[layer] = 0
        iterator = iter(tables)
        first = next(iterator, None)
        if first is None:
            raise OutputError(f"{self._final}: no rows at all (not even a schema) for {layer!r}")
        schema_table = first
        while len(schema_table) == 0:  # empty tables carry a schema, perhaps of other dtypes
            following = next(iterator, None)
            if following is None:  # every table is empty: the first one's schema
                schema_table = first
                break
            schema_table = following
        first = schema_table
        geometry_type = layer_geometry_type(first)
        failures: list[BaseException] = []

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                for table in itertools.chain([first], iterator):
                    if len(table) == 0:
                        continue
                    if not table.schema.equals(first.schema):
                        # GDAL reads the batches by the stream's schema: never hand it others
                        raise OutputError(
                            f"{self._final}: the rows for layer {layer!r} changed columns or "
                            f"types mid-stream ({table.schema} after {first.schema})"
                        )
                    self._counts[layer] += len(table)
                    yield from matching_layer_type(table, geometry_type).to_batches()
            except BaseException as error:  # Arrow would hand GDAL only its message
                failures.append(error)
                raise

        stream = pa.RecordBatchReader.from_batches(first.schema, batches())
        try:
            _write_arrow(stream, self._path, layer, geometry_type, False)
        except BaseException as error:
            if failures:
                raise failures[0] from None
            if isinstance(error, DataSourceError | DataLayerError):
                raise OutputError(
                    f"{self._final}: writing layer {layer!r} failed ({error})"
                ) from None
            raise
        self._started.add(layer)

    def _flush(self, layer: str) -> None:
        parts = self._buffers.pop(layer, [])
        if not parts:
            return
        table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        append = layer in self._started
        if append and len(table) == 0:
            return
        try:
            _write_table(table, self._path, layer, append=append)
        except (DataSourceError, DataLayerError) as error:
            raise OutputError(f"{self._final}: writing layer {layer!r} failed ({error})") from None
        self._started.add(layer)

    def close(self) -> None:
        """Write every buffered row, then the styles."""
        for layer in list(self._buffers):
            self._flush(layer)
        self._write_styles()

    def write_attributes(self, layer: str, frame: pd.DataFrame) -> None:
        """Write ``frame`` as the non-spatial table ``layer`` (replacing any of that name)."""
        if layer in self._counts:
            raise OutputError(f"{self._final}: layer {layer!r} is already being written")
        try:
            pyogrio.write_dataframe(
                pd.DataFrame(frame), self._path, layer=layer, driver="GPKG", append=False
            )
        except (DataSourceError, DataLayerError) as error:
            raise OutputError(f"{self._final}: writing table {layer!r} failed ({error})") from None
        self._counts[layer] = len(frame)
        self._started.add(layer)

    def set_style(self, layer: str, qml: str) -> None:
        """Make ``qml`` the default QGIS style of ``layer``."""
        self._styles[layer] = qml

    @property
    def counts(self) -> dict[str, int]:
        """Features written per layer so far."""
        return dict(self._counts)

    def _write_styles(self) -> None:
        """Store the styles in ``layer_styles``, keeping other layers' rows."""
        if not self._styles:
            return
        updated = datetime.now(UTC) if self._timestamp is None else pd.Timestamp(self._timestamp)
        rows = pd.DataFrame(
            [_style_row(layer, qml, updated) for layer, qml in self._styles.items()],
            columns=list(_STYLE_COLUMNS),
        )
        if STYLES_LAYER in _layer_names(self._path):
            existing = pyogrio.read_dataframe(self._path, layer=STYLES_LAYER, read_geometry=False)
            kept = existing.loc[~existing["f_table_name"].isin(list(self._styles))]
            rows = pd.concat([kept[list(_STYLE_COLUMNS)], rows], ignore_index=True)
        rows["useAsDefault"] = rows["useAsDefault"].astype(bool)
        rows["update_time"] = pd.to_datetime(rows["update_time"], utc=True)
        pyogrio.write_dataframe(
            rows, self._path, layer=STYLES_LAYER, driver="GPKG", layer_options={"FID": "id"}
        )


def _style_row(layer: str, qml: str, updated: datetime) -> dict[str, Any]:
    return {
        "f_table_catalog": "",
        "f_table_schema": "",
        "f_table_name": layer,
        "f_geometry_column": "geom",
        "styleName": layer,
        "styleQML": qml,
        "styleSLD": "",
        "useAsDefault": True,
        "description": "geoseg class colours",
        "owner": "",
        "ui": "",
        "update_time": updated,
    }


def _layer_names(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [str(name) for name in pyogrio.list_layers(path)[:, 0]]


@contextlib.contextmanager
def fixed_change_time(timestamp: str | None) -> Iterator[None]:
    """GeoPackages written in this block record ``timestamp`` as their change time.

    GDAL stamps ``gpkg_contents.last_change`` with the clock unless its
    ``OGR_CURRENT_DATE`` option is set (to the exact text it records); a fixed
    time makes repeated writes of the same layers byte-identical. None keeps
    the clock. For the GeoPackage writers of :mod:`geoseg.io`, which take the
    time as their ``timestamp`` argument.
    """
    if timestamp is None:
        yield
        return
    previous = pyogrio.get_gdal_config_option(_DATE_OPTION)
    pyogrio.set_gdal_config_options({_DATE_OPTION: timestamp})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({_DATE_OPTION: previous})


@contextlib.contextmanager
def open_geopackage(
    path: str | Path, *, buffer_rows: int = 100_000, timestamp: str | None = None
) -> Iterator[GeoPackageWriter]:
    """Yield a writer for the GeoPackage ``path``; it appears there atomically on success.

    The writer starts from a copy of the existing file, so layers not written
    are kept. On an exception the temporary copy is removed and ``path`` is
    left byte-identical. ``buffer_rows`` rows are written per transaction.
    ``timestamp`` (ISO 8601 UTC, e.g. ``2026-01-01T00:00:00Z``) is recorded as
    the change time of the layers and styles written (default: the clock).
    """
    final = Path(path)
    # The file is fsynced and renamed only once complete, so SQLite's own
    # per-transaction syncs buy nothing here.
    previous = pyogrio.get_gdal_config_option(_SYNC_OPTION)
    pyogrio.set_gdal_config_options({_SYNC_OPTION: "OFF"})
    try:
        with (
            fixed_change_time(timestamp),
            atomic_path(final, copy_existing=True) as temporary,
        ):
            writer = GeoPackageWriter(
                temporary, final, buffer_rows=buffer_rows, timestamp=timestamp
            )
            yield writer
            writer.close()
    finally:
        pyogrio.set_gdal_config_options({_SYNC_OPTION: previous})


def write_layers(
    path: str | Path,
    layers: Mapping[str, gpd.GeoDataFrame],
    *,
    styles: Mapping[str, str] | None = None,
    timestamp: str | None = None,
    tables: Mapping[str, pd.DataFrame] | None = None,
) -> dict[str, int]:
    """Write several layers (and their QML styles) into a GeoPackage atomically.

    ``timestamp`` is the change time recorded, as for :func:`open_geopackage`;
    ``tables`` are non-spatial tables written with the layers.

    Returns
    -------
    dict
        Feature count per layer written.
    """
    with open_geopackage(path, timestamp=timestamp) as writer:
        for layer, frame in layers.items():
            writer.write(layer, frame)
            if styles and layer in styles:
                writer.set_style(layer, styles[layer])
        for layer, frame in (tables or {}).items():
            writer.write_attributes(layer, frame)
    return writer.counts


def read_vector(
    path: str | Path, layer: str | None = None, *, columns: Sequence[str] | None = None
) -> gpd.GeoDataFrame:
    """Read a vector file (GeoPackage, shapefile...) into a GeoDataFrame.

    Parameters
    ----------
    path
        The file.
    layer
        Layer name (default: the first layer other than ``layer_styles``).
    columns
        Fields that must exist (all are read).

    Raises
    ------
    VectorReadError
        Missing or unreadable file, unknown layer (the message lists the
        layers), a missing field, or a layer without CRS.
    """
    path = Path(path)
    if not path.exists():
        raise VectorReadError(f"{path}: no such file")
    try:
        names = _layer_names(path)
    except DataSourceError as error:
        raise VectorReadError(f"{path}: not a readable vector file ({error})") from None
    if layer is not None and layer not in names:
        raise VectorReadError(f"{path}: no layer {layer!r}; the file has layers {names}")
    if layer is None:  # the first data layer, never the QGIS styles table
        data_layers = [name for name in names if name != STYLES_LAYER]
        if not data_layers:
            raise VectorReadError(f"{path}: the file has no layers")
        layer = data_layers[0]
    try:
        frame = pyogrio.read_dataframe(path, layer=layer)
    except (DataSourceError, DataLayerError) as error:
        raise VectorReadError(f"{path}: reading layer {layer!r} failed ({error})") from None
    where = f"{path} (layer {layer!r})"
    missing = [name for name in columns or () if name not in frame.columns]
    if missing:
        fields = [name for name in frame.columns if name != "geometry"]
        raise VectorReadError(f"{where}: no field(s) {missing}; the layer has fields {fields}")
    if not isinstance(frame, gpd.GeoDataFrame) or frame.crs is None:
        raise VectorReadError(f"{where}: the layer has no geometry or no CRS; assign a CRS")
    return frame
