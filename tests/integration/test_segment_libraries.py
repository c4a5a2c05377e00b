"""geoseg.segment on the real Zion scene loaded by rioxarray, odc-stac and stackstac.

Each gives the labels ``geoseg predict`` writes for the scene, byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import odc.stac
import pytest
import rasterio
import rioxarray
import stackstac
import xarray as xr

from geoseg.catalog.datadir import data_file
from geoseg.catalog.items import stac_item
from geoseg.models.loading import shipped_models
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from tests.clusters import started_client
from workflows.predict import predict_file
from workflows.segment import segment

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif("landcover-landsat" not in shipped_models(), reason="no shipped model"),
]

SCENE = "zion/zion_landsat8_20150818_b2345.tif"
ITEM = "zion-landsat8-20150818"
MODEL = "landcover-landsat"
BANDS = ["blue", "green", "red", "nir"]


@pytest.fixture(scope="module")
def predicted(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    out = tmp_path_factory.mktemp("zion") / "labels.tif"
    with started_client(1, threads_per_worker=2) as client:
        predict_file(
            data_file(SCENE),
            MODEL,
            InferenceSettings(),
            PredictOutputs(out),
            client=client,
            progress=False,
        )
    with rasterio.open(out) as labels:
        return labels.read(1)


def load_rioxarray() -> xr.DataArray:
    return rioxarray.open_rasterio(data_file(SCENE), chunks=700)


def load_odc() -> xr.Dataset:
    return odc.stac.load([stac_item(ITEM)], bands=BANDS, chunks={"x": 512, "y": 512})


def load_stackstac() -> xr.DataArray:
    return stackstac.stack([stac_item(ITEM)], assets=BANDS, chunksize=800, snap_bounds=False)


@pytest.mark.parametrize("load", [load_rioxarray, load_odc, load_stackstac])
def test_segment_equals_predict_from_each_loader(load: object, predicted: np.ndarray) -> None:
    scene = load()  # type: ignore[operator]
    labels = segment(scene, MODEL, settings=InferenceSettings(chunk_size=1000))
    with dask.config.set(scheduler="threads"):
        result = labels.values
    assert np.array_equal(result, predicted)
    with rasterio.open(data_file(SCENE)) as source:
        assert labels.rio.crs == source.crs
        assert labels.rio.transform() == source.transform
