"""Reading training labels given as polygons.

Labelled polygons are read once (they are small) and reprojected to the image
CRS; rasterising them onto chips is done in memory by
:mod:`geoseg.training.sampling`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyogrio
from rasterio.crs import CRS

from geoseg.errors import VectorReadError


def read_labelled_polygons(path: str | Path, field: str, crs: CRS) -> list[tuple[Any, str]]:
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
        frame = pyogrio.read_dataframe(path)
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
