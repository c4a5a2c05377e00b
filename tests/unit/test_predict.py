from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from distributed import Client

from geoseg.grid import PixelWindow
from geoseg.io.workdir import read_tile_batch
from geoseg.labels import CLASS_NAMES_TAG, LABEL_NODATA
from geoseg.predict import assemble, inference
from geoseg.predict.blending import PROBABILITY_SCALE, blend_window
from geoseg.predict.forward import batch_inputs, compute_batch, forward_batch
from geoseg.predict.placement import place_inference
from geoseg.predict.plan import PredictPlan, batch_parts, make_plan
from geoseg.predict.preprocess import normalize, reflect_pad
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from geoseg.predict.sources import FileSource
from geoseg.predict.stitching import TileBatch, shared_windows
from geoseg.predict.tiling import tile_batches, tiles_touching
from tests.clusters import started_client
from tests.conftest import write_geotiff
from tests.predict_fixtures import make_fixed_conv_dir, make_model_dir
from workflows import predict as predict_workflow
from workflows.predict import PredictResult, predict_file

DESCRIPTIONS = ["B2_blue", "B3_green", "B4_red", "B5_nir"]


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with started_client(1, threads_per_worker=2) as connected:
        yield connected


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny-unet")


def landscape(generator: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth random fields (so a model sees structure), uint16 digital numbers."""
    coarse = generator.random((4, height // 16 + 2, width // 16 + 2))
    rows = np.linspace(0, coarse.shape[1] - 1.001, height)
    cols = np.linspace(0, coarse.shape[2] - 1.001, width)
    r0, c0 = rows.astype(int), cols.astype(int)
    fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
    field = (
        coarse[:, r0][:, :, c0] * (1 - fr) * (1 - fc)
        + coarse[:, r0 + 1][:, :, c0] * fr * (1 - fc)
        + coarse[:, r0][:, :, c0 + 1] * (1 - fr) * fc
        + coarse[:, r0 + 1][:, :, c0 + 1] * fr * fc
    )
    noise = generator.random((4, height, width)) * 0.1
    return ((field + noise) * 3000 + 5000).astype(np.uint16)


@pytest.fixture
def scene(tmp_path: Path, rng: np.random.Generator) -> Path:
    data = landscape(rng, 230, 190)
    data[:, 100:120, 50:80] = 65535
    data[2, 10:14, 170:175] = 65535  # nodata in one band only
    return write_geotiff(tmp_path / "scene.tif", data, nodata=65535, descriptions=DESCRIPTIONS)


def run(
    scene: Path,
    model: Path,
    out: Path,
    client: Client,
    probabilities_out: Path | None = None,
    **options: Any,
) -> PredictResult:
    outputs = PredictOutputs(out, probabilities_out)
    settings = InferenceSettings(**options)
    return predict_file(scene, model, settings, outputs, client=client, progress=False)


def cpu_plan(
    path: Path,
    model: Path,
    tmp_path: Path,
    *,
    tile: int | None,
    overlap: int | None,
    chunk_size: int,
) -> PredictPlan:
    """The plan of an fp32 CPU run of labels only, batch 8."""
    settings = InferenceSettings(
        tile=tile,
        overlap=overlap,
        batch_size=8,
        chunk_size=chunk_size,
        device="cpu",
        precision="fp32",
    )
    placement = place_inference("cpu", {"local": inference.device_support()}, precision="fp32")
    return make_plan(
        FileSource.open(path),
        model,
        settings,
        placement,
        work_root=tmp_path,
        write_probabilities=False,
    )


def test_fixed_convolution_is_reproduced_exactly_through_tiling(
    tmp_path: Path, rng: np.random.Generator, client: Client
) -> None:
    model = make_fixed_conv_dir(tmp_path / "conv")
    data = landscape(rng, 157, 203)
    data[:, 60:75, 90:130] = 65535
    path = write_geotiff(tmp_path / "conv.tif", data, nodata=65535, descriptions=DESCRIPTIONS)
    result = run(
        path,
        model,
        tmp_path / "labels.tif",
        client,
        probabilities_out=tmp_path / "probabilities.tif",
        chunk_size=70,
    )
    # whole-image reference: the same scaling, one convolution over the whole scene
    plan = cpu_plan(path, model, tmp_path, tile=None, overlap=None, chunk_size=70)
    physical, valid = plan.source.read(plan.source.grid.full_window)
    inputs = normalize(physical, valid, plan.scaling, plan.statistics)
    loaded = inference.cached_model(plan.model)
    with torch.no_grad():
        logits = loaded.module(torch.from_numpy(inputs[None]))
    expected_probabilities = torch.softmax(logits, dim=1)[0].numpy()
    expected = np.array([1, 4, 5], dtype=np.uint8)[np.argmax(expected_probabilities, axis=0)]
    expected[~valid] = LABEL_NODATA
    with rasterio.open(result.labels) as dataset:
        labels = dataset.read(1)
    assert result.tiles > 9
    assert np.array_equal(labels, expected)
    with rasterio.open(tmp_path / "probabilities.tif") as dataset:
        probabilities = dataset.read()
    quantized = np.rint(expected_probabilities * PROBABILITY_SCALE)
    assert np.abs(probabilities[:, valid] - quantized[:, valid]).max() <= 1
    assert (probabilities[:, ~valid] == 0).all()
    # where tiles overlap, the float probabilities blended from the stored bands equal
    # the whole-image ones (elsewhere each pixel is one tile's own output)
    plan.work_dir.mkdir()
    bands = {}
    for number, indexes in enumerate(tile_batches(plan.layout, 8)):
        batch = TileBatch(*read_tile_batch(forward_batch(plan, number, indexes), plan.layout.tile))
        bands.update({parts.index: parts.bands for parts in batch_parts(plan, indexes, batch)})
    shared = shared_windows(plan.layout, plan.source.grid.full_window)
    assert len(shared) > 4
    for window in shared:
        inside = valid[window.slices()]
        stitched = blend_window(plan.layout, window, bands.items(), inside, 3)
        reference = expected_probabilities[(slice(None), *window.slices())]
        np.testing.assert_allclose(stitched[:, inside], reference[:, inside], atol=2e-6)


def test_labels_are_byte_identical_for_any_chunk_size(
    scene: Path, model_dir: Path, tmp_path: Path, client: Client
) -> None:
    outputs = []
    for chunk_size in (64, 100, 1000):
        labels = tmp_path / f"labels_{chunk_size}.tif"
        probabilities = tmp_path / f"probabilities_{chunk_size}.tif"
        run(
            scene, model_dir, labels, client, chunk_size=chunk_size, probabilities_out=probabilities
        )
        outputs.append((labels.read_bytes(), probabilities.read_bytes()))
    assert outputs[0] == outputs[1] == outputs[2]
    with rasterio.open(tmp_path / "labels_64.tif") as dataset:
        assert len(np.unique(dataset.read(1))) >= 3  # the model is not constant


def test_outputs_are_byte_identical_whatever_the_strips_a_chunk_is_stitched_by(
    scene: Path, model_dir: Path, tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = []
    for strip_bytes in (assemble.ASSEMBLE_STRIP_BYTES, 4 * 3 * 100 * 16):  # whole, 16-row strips
        monkeypatch.setattr(assemble, "ASSEMBLE_STRIP_BYTES", strip_bytes)
        labels = tmp_path / f"labels_{strip_bytes}.tif"
        probabilities = tmp_path / f"probabilities_{strip_bytes}.tif"
        run(scene, model_dir, labels, client, chunk_size=100, probabilities_out=probabilities)
        outputs.append((labels.read_bytes(), probabilities.read_bytes()))
    assert len(assemble.assemble_strips(PixelWindow(0, 0, 100, 100), 3)) == 7
    assert outputs[0] == outputs[1]


def test_output_keeps_georeferencing_and_carries_classes(
    scene: Path, model_dir: Path, tmp_path: Path, client: Client
) -> None:
    out = tmp_path / "labels.tif"
    probability_out = tmp_path / "probabilities.tif"
    result = run(scene, model_dir, out, client, chunk_size=128, probabilities_out=probability_out)
    with rasterio.open(probability_out) as probabilities:
        assert probabilities.descriptions == ("water", "forest", "shrubland")
        assert probabilities.dtypes == ("uint8",) * 3 and probabilities.nodata is None
        assert probabilities.scales == (1 / 255,) * 3
        assert probabilities.profile["compress"] == "deflate"
        total = probabilities.read().astype(int).sum(axis=0)
    with rasterio.open(scene) as source, rasterio.open(out) as labels:
        assert labels.crs == source.crs
        assert labels.transform == source.transform
        assert labels.shape == source.shape
        assert labels.dtypes == ("uint8",)
        assert labels.nodata == LABEL_NODATA
        assert labels.profile["tiled"] and labels.profile["compress"] == "lzw"
        assert labels.tags()[CLASS_NAMES_TAG] == ('{"1": "water", "4": "forest", "5": "shrubland"}')
        assert labels.colormap(1)[4][:3] == (0x33, 0xA0, 0x2C)
        assert labels.descriptions == ("class",)
        counts = dict(zip(*np.unique(labels.read(1), return_counts=True), strict=True))
    assert {int(k): int(v) for k, v in counts.items() if k != LABEL_NODATA} == result.class_pixels
    valid = np.any(total > 0)
    assert valid and np.abs(total[total > 0] - 255).max() <= 2  # probabilities sum to 1
    assert not list(tmp_path.glob(".geoseg-work-*")), "work directory removed after success"
    assert not list(tmp_path.glob("*.partial*"))


def test_nodata_propagates_exactly_and_borders_are_covered(
    scene: Path, model_dir: Path, tmp_path: Path, client: Client
) -> None:
    out = tmp_path / "labels.tif"
    run(scene, model_dir, out, client, chunk_size=96)
    with rasterio.open(scene) as source, rasterio.open(out) as labels:
        invalid = np.any(source.read() == 65535, axis=0)
        result = labels.read(1)
    assert np.array_equal(result == LABEL_NODATA, invalid)
    for edge in (result[0], result[-1], result[:, 0], result[:, -1]):
        assert (edge != LABEL_NODATA).all()


def test_scene_smaller_than_a_tile_is_padded_by_reflection(
    tmp_path: Path, model_dir: Path, rng: np.random.Generator, client: Client
) -> None:
    data = landscape(rng, 40, 90)
    path = write_geotiff(tmp_path / "small.tif", data, nodata=65535, descriptions=DESCRIPTIONS)
    result = run(path, model_dir, tmp_path / "labels.tif", client)
    with rasterio.open(result.labels) as labels:
        assert labels.shape == (40, 90)
        assert (labels.read(1) != LABEL_NODATA).all()


def test_tile_and_overlap_barely_change_the_labels(
    scene: Path, model_dir: Path, tmp_path: Path, client: Client
) -> None:
    # random tiny model (no shipped model in unit tests): the real-model check is in
    # tests/integration/test_predict_zion.py
    labels = []
    for tile, overlap in ((64, 16), (96, 32), (128, 24)):
        out = tmp_path / f"labels_{tile}.tif"
        run(scene, model_dir, out, client, tile=tile, overlap=overlap)
        with rasterio.open(out) as dataset:
            labels.append(dataset.read(1))
    valid = labels[0] != LABEL_NODATA
    for other in labels[1:]:
        agreement = float((other[valid] == labels[0][valid]).mean())
        assert agreement >= 0.99, agreement


def test_rerun_after_interruption_resumes_and_matches(
    scene: Path, model_dir: Path, tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = tmp_path / "reference.tif"
    run(scene, model_dir, reference, client, chunk_size=64)
    out = tmp_path / "labels.tif"
    out.write_bytes(b"previous output")

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(predict_workflow, "assemble_cog", crash)
        with pytest.raises(KeyboardInterrupt):
            run(scene, model_dir, out, client, chunk_size=64)
    assert out.read_bytes() == b"previous output"
    assert len(list(tmp_path.glob(".geoseg-work-*"))) == 1
    result = run(scene, model_dir, out, client, chunk_size=64)
    assert result.chunks_computed == 0 and result.chunks_reused == 12
    assert out.read_bytes() == reference.read_bytes()
    assert not list(tmp_path.glob(".geoseg-work-*"))


def test_model_is_loaded_once_per_process(
    scene: Path, model_dir: Path, tmp_path: Path, client: Client
) -> None:
    fresh = make_model_dir(tmp_path / "fresh-model", seed=11)
    before = inference.model_loads()
    result = run(scene, fresh, tmp_path / "labels.tif", client, chunk_size=64, batch_size=2)
    assert result.tiles > 10
    assert inference.model_loads() - before == 1


def test_batch_inputs_equal_each_tile_read_and_scaled_on_its_own(
    scene: Path, model_dir: Path, tmp_path: Path
) -> None:
    plan = cpu_plan(scene, model_dir, tmp_path, tile=64, overlap=16, chunk_size=128)
    layout = plan.layout
    # two tile rows, the last tile of each past the right border, and the bottom row
    indexes = [layout.columns - 2, layout.columns - 1, layout.columns, layout.count - 1]
    inputs, valid = batch_inputs(plan, indexes)
    assert inputs.shape == (4, 4, 64, 64) and valid.shape == (4, 64, 64)
    for position, index in enumerate(indexes):
        window = layout.window(index)
        physical, tile_valid = plan.source.read(window)
        expected = normalize(physical, tile_valid, plan.scaling, plan.statistics)
        inside = window.clip(layout.height, layout.width).shift(-window.row, -window.col)
        expected, tile_valid = reflect_pad(expected, tile_valid, inside)
        assert np.array_equal(inputs[position], expected)
        assert np.array_equal(valid[position], tile_valid)
    assert not np.array_equal(inputs[1][:, :, -1], inputs[1][:, :, 0])  # padded, not left empty


def test_the_plan_schedules_each_chunk_with_the_batches_of_its_tiles(
    scene: Path, model_dir: Path, tmp_path: Path
) -> None:
    plan = cpu_plan(scene, model_dir, tmp_path, tile=64, overlap=16, chunk_size=100)
    assert plan.batches == tuple(tile_batches(plan.layout, 8))
    assert [chunk.window for chunk in plan.chunks] == list(plan.source.grid.chunks(100))
    for chunk in plan.chunks:
        held = {index for number in chunk.batches for index in plan.batches[number]}
        assert set(tiles_touching(plan.layout, chunk.window)) <= held
        assert list(chunk.batches) == sorted(chunk.batches)
        # no batch without a tile touching the chunk
        for number in chunk.batches:
            assert any(
                not plan.layout.window(i).intersection(chunk.window).is_empty
                for i in plan.batches[number]
            )


def test_batches_with_empty_tiles_and_their_stored_files_equal_each_tile_alone(
    model_dir: Path, tmp_path: Path, rng: np.random.Generator
) -> None:
    data = landscape(rng, 150, 150)
    data[:, :, 40:110] = 65535  # whole tiles without a valid pixel inside the batch
    path = write_geotiff(tmp_path / "holes.tif", data, nodata=65535, descriptions=DESCRIPTIONS)
    plan = cpu_plan(path, model_dir, tmp_path, tile=32, overlap=8, chunk_size=64)
    indexes = list(range(plan.layout.columns))  # the first tile row: valid, empty, valid
    batch = compute_batch(plan, indexes)
    assert not batch.valid.any(axis=(1, 2)).all() and batch.valid.any()
    alone = [compute_batch(plan, [index]) for index in indexes]
    assert np.array_equal(batch.bands, np.concatenate([tile.bands for tile in alone]))
    assert np.array_equal(batch.solo, np.concatenate([tile.solo for tile in alone]))
    # written a tile at a time into the work folder: the same values
    plan.work_dir.mkdir()
    stored = read_tile_batch(forward_batch(plan, 0, indexes), plan.layout.tile)
    assert np.array_equal(stored[0], batch.bands)
    assert np.array_equal(stored[1], batch.solo)
    assert np.array_equal(stored[2], batch.valid)
