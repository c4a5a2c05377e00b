"""The engine on the real Landsat-8 scene of Zion (1428 x 1128 px, 4 bands, nodata 65535).

Uses the shipped ``landcover-landsat`` model when it exists, else a seeded random
tiny U-Net (then the agreement figures only check the stitching, not a trained model).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from distributed import Client

from geoseg.catalog.datadir import data_file
from geoseg.io.raster import read_info
from geoseg.labels import CLASS_NAMES_TAG, LABEL_NODATA
from geoseg.models.loading import shipped_models
from geoseg.predict.overviews import decimate, overview_factors
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from tests.clusters import started_client
from tests.predict_fixtures import make_model_dir
from workflows.predict import predict_file

pytestmark = [
    pytest.mark.slow,
]

SCENE = "zion/zion_landsat8_20150818_b2345.tif"


@pytest.fixture(scope="module")
def zion(shared_data: Path) -> Path:
    return data_file(SCENE)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str | Path:
    if "landcover-landsat" in shipped_models():
        return "landcover-landsat"
    return make_model_dir(
        tmp_path_factory.mktemp("model") / "random-unet", tile_size=256, overlap=32
    )


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with started_client(1, threads_per_worker=2) as connected:
        yield connected


@pytest.fixture(scope="module")
def default_run(
    zion: Path, model: str | Path, client: Client, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("zion") / "labels.tif"
    settings = InferenceSettings(chunk_size=1024)
    predict_file(zion, model, settings, PredictOutputs(out), client=client, progress=False)
    return out


def test_zion_output_is_a_cog_on_the_input_grid_with_nodata_propagated(
    zion: Path, default_run: Path
) -> None:
    with rasterio.open(zion) as source, rasterio.open(default_run) as labels:
        assert (labels.crs, labels.transform, labels.shape) == (
            source.crs,
            source.transform,
            source.shape,
        )
        assert labels.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert labels.overviews(1), "overviews expected for a 1428 x 1128 scene"
        assert CLASS_NAMES_TAG in labels.tags()
        invalid = np.any(source.read() == 65535, axis=0)
        result = labels.read(1)
    # the scene has no nodata pixel: every output pixel, the borders included, gets a class
    assert np.array_equal(result == LABEL_NODATA, invalid)
    assert not (result == LABEL_NODATA).any()
    # the overviews (built chunk by chunk) sample the centre of each block of the labels
    grid = read_info(default_run).grid
    for number, factor in enumerate(overview_factors(grid.height, grid.width)):
        with rasterio.open(default_run, overview_level=number) as level:
            _, expected = decimate(result[None], grid.full_window, grid, factor)
            assert np.array_equal(level.read(1), expected[0])


def test_zion_labels_do_not_depend_on_the_chunk_size(
    zion: Path, model: str | Path, client: Client, default_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "labels_300.tif"
    settings = InferenceSettings(chunk_size=300)
    predict_file(zion, model, settings, PredictOutputs(out), client=client, progress=False)
    assert out.read_bytes() == default_run.read_bytes()


def test_zion_labels_are_stable_across_tile_geometry(
    zion: Path, model: str | Path, client: Client, default_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "labels_other_tiles.tif"
    settings = InferenceSettings(tile=384, overlap=64)
    predict_file(zion, model, settings, PredictOutputs(out), client=client, progress=False)
    with rasterio.open(default_run) as first, rasterio.open(out) as second:
        a, b = first.read(1), second.read(1)
    valid = a != LABEL_NODATA
    agreement = float((a[valid] == b[valid]).mean())
    assert agreement >= 0.99, agreement
