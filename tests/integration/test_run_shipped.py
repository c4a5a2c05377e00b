"""``geoseg run`` with the shipped ``landcover-landsat`` model on the Zion test block."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoseg.bbox import make_bbox
from geoseg.errors import ModelError
from geoseg.models.loading import resolve_model_dir
from geoseg.predict.settings import InferenceSettings
from tests.clusters import started_client
from workflows.run_bbox import run_bbox

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:scene zion-landsat8-20150818 has no quality band"),
]

# 160 x 160 px of the Zion scene's test block (rows >= 1000, never used for training)
TEST_BLOCK = (315015.0, 4119285.0, 319815.0, 4124085.0)


def test_shipped_model_maps_the_test_block(shared_data: Path, tmp_path: Path) -> None:
    try:
        resolve_model_dir("landcover-landsat")
    except ModelError:
        pytest.skip("the shipped landcover-landsat model is not in this build")
    with started_client(1, threads_per_worker=2) as client:
        result = run_bbox(
            make_bbox(TEST_BLOCK, "EPSG:32612"),
            "2015-08-18",
            out=tmp_path / "zion.gpkg",
            model="landcover-landsat",
            settings=InferenceSettings(),
            progress=False,
            client=client,
        )
    assert result.grid.shape == (160, 160)
    with rasterio.open(result.labels[0]) as predicted:
        labels = predicted.read(1)
        window = rasterio.windows.from_bounds(*TEST_BLOCK, transform=predicted.transform)
    with rasterio.open(shared_data / "zion" / "nlcd_generalized_on_landsat_grid.tif") as truth:
        reference = truth.read(1, window=rasterio.windows.from_bounds(*TEST_BLOCK, truth.transform))
    assert window.width == 160 and labels.shape == reference.shape
    valid = reference != 255
    agreement = float(np.mean(labels[valid] == reference[valid]))
    # the per-pixel random forest baseline of the model issue scores well below this
    assert agreement > 0.5, agreement
    print(f"agreement with NLCD on the test block: {agreement:.3f}")
    assert result.quicklook is not None and result.quicklook.stat().st_size > 10_000
