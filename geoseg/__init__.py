"""geoseg: out-of-core land-use and deforestation segmentation of large GeoTIFFs.

In a notebook: ``geoseg.segment(scene, "forest")`` segments an
xarray scene (rioxarray, odc-stac, stackstac) lazily, ``geoseg.vectorize``
and ``geoseg.change`` turn class maps into GeoDataFrames and tables,
``geoseg.stac_item`` hands a catalog scene to odc-stac or stackstac (see
docs/example_forest_loss.py).

The names in ``__all__`` are the public entry points a notebook user calls;
``dir(geoseg)`` lists them. They are imported on first use (PEP 562), so
``import geoseg`` stays cheap: it does not load torch, Dask or rasterio.

The pipeline's stages live in the packages :mod:`geoseg.catalog`,
:mod:`geoseg.predict`, :mod:`geoseg.vector`, :mod:`geoseg.change` and
:mod:`geoseg.report`, with all file formats in :mod:`geoseg.io`; the
:mod:`workflows` package wires them into Dask graphs and :mod:`geoseg.cli`
exposes them as commands. ARCHITECTURE.md maps the tree.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from geoseg.errors import (
    BandMismatchError,
    BBoxError,
    CatalogError,
    ChecksumError,
    ConfigError,
    DataDirError,
    GeosegError,
    GridMismatchError,
    InputError,
    JobError,
    ModelError,
    OutputError,
    RasterReadError,
    VectorReadError,
)

if TYPE_CHECKING:
    from geoseg.bbox import make_bbox
    from geoseg.catalog.items import stac_item
    from geoseg.catalog.stac import search
    from geoseg.change.classmap import ClassMap, load_class_map, preset_class_map
    from geoseg.grid import PixelWindow, RasterGrid
    from geoseg.io.checkpoint import read_card
    from geoseg.models.loading import Model, load_model, open_model
    from geoseg.predict.settings import InferenceSettings
    from workflows.change import change_file
    from workflows.frames import ChangeTables, change, vectorize
    from workflows.predict import predict_file, predict_source
    from workflows.run_bbox import run_bbox
    from workflows.run_change import run_change
    from workflows.segment import segment
    from workflows.vectorize import vectorize_file

__version__ = "0.1.0"

# public name -> the module that defines it, imported on first access
_LAZY_SOURCES: dict[str, str] = {
    "make_bbox": "geoseg.bbox",
    "PixelWindow": "geoseg.grid",
    "RasterGrid": "geoseg.grid",
    "search": "geoseg.catalog.stac",
    "stac_item": "geoseg.catalog.items",
    "open_model": "geoseg.models.loading",
    "Model": "geoseg.models.loading",
    "InferenceSettings": "geoseg.predict.settings",
    "segment": "workflows.segment",
    "vectorize": "workflows.frames",
    "change": "workflows.frames",
    "ChangeTables": "workflows.frames",
    "load_model": "geoseg.models.loading",
    "read_card": "geoseg.io.checkpoint",
    "ClassMap": "geoseg.change.classmap",
    "preset_class_map": "geoseg.change.classmap",
    "load_class_map": "geoseg.change.classmap",
    "predict_file": "workflows.predict",
    "predict_source": "workflows.predict",
    "vectorize_file": "workflows.vectorize",
    "change_file": "workflows.change",
    "run_bbox": "workflows.run_bbox",
    "run_change": "workflows.run_change",
}

__all__ = [
    "BBoxError",
    "BandMismatchError",
    "CatalogError",
    "ChangeTables",
    "ChecksumError",
    "ClassMap",
    "ConfigError",
    "DataDirError",
    "GeosegError",
    "GridMismatchError",
    "InferenceSettings",
    "InputError",
    "JobError",
    "Model",
    "ModelError",
    "OutputError",
    "PixelWindow",
    "RasterGrid",
    "RasterReadError",
    "VectorReadError",
    "change",
    "change_file",
    "load_class_map",
    "load_model",
    "make_bbox",
    "open_model",
    "predict_file",
    "predict_source",
    "preset_class_map",
    "read_card",
    "run_bbox",
    "run_change",
    "search",
    "segment",
    "stac_item",
    "vectorize",
    "vectorize_file",
]


def __getattr__(name: str) -> object:
    """Import a public name from its module on first access (PEP 562)."""
    module = _LAZY_SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'geoseg' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names, as listed in ``__all__``."""
    return sorted(__all__)
