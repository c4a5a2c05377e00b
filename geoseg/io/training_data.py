"""Reading training labels given as polygons.

Labelled polygons are read once (they are small) and reprojected to the image
CRS; rasterising them onto chips is done in memory by
:mod:`geoseg.training.sampling`.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pyogrio
from rasterio.crs import CRS

from geoseg.errors import InputError, VectorReadError
from geoseg.io.raster import read_info


def read_labelled_polygons(
    path: str | Path, field: str, crs: CRS, *, layer: str | None = None
) -> list[tuple[Any, str]]:
    """Polygons of ``path`` reprojected to ``crs``, each with its ``field`` value as text.

    Raises
    ------
    VectorReadError
        Missing or unreadable file, no CRS, or no such field (the message lists
        the fields there are).
    """
    path = Path(path)
    if not path.exists():
        raise VectorReadError(f"{path}: no such vector file")
    try:
        frame = pyogrio.read_dataframe(path, layer=layer)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as error:
        raise VectorReadError(f"{path}: not a readable vector file ({error})") from None
    if field not in frame.columns:
        fields = ", ".join(str(name) for name in frame.columns if name != "geometry")
        raise VectorReadError(f"{path}: no field {field!r}; fields: {fields}")
    if frame.crs is None:
        raise VectorReadError(f"{path}: the layer has no CRS; assign one (e.g. a .prj file)")
    frame = frame.to_crs(crs)
    return [
        (geometry, str(value))
        for geometry, value in zip(frame.geometry, frame[field], strict=True)
        if geometry is not None and not geometry.is_empty
    ]


def read_class_map(path: str | Path) -> list[dict[str, str]]:
    """The rows of a class-map CSV (columns ``site``, ``class`` and harmonised columns).

    Raises
    ------
    InputError
        Missing file, or no ``site`` or ``class`` column.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such class-map file")
    with path.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    if not rows or not {"site", "class"} <= set(rows[0]):
        raise InputError(f"{path}: a class map needs the columns 'site' and 'class'")
    return rows


def read_label_class_names(path: str | Path) -> dict[int, str]:
    """``{code: class name}`` from a label raster's ``class_<code>`` tags."""
    names: dict[int, str] = {}
    for key, value in read_info(path).tags.items():
        prefix, _, code = key.partition("_")
        if prefix == "class" and code.isdigit():
            names[int(code)] = value
    return names
