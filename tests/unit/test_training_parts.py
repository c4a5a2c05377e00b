from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import torch
from affine import Affine
from shapely.geometry import box

from geoseg.errors import ConfigError
from geoseg.grid import PixelWindow
from geoseg.models.card import InputScaling
from geoseg.training.augment import SYMMETRIES, apply_symmetry, radiometric_jitter
from geoseg.training.config import SceneSpec
from geoseg.training.loop import torch_threads, validation_score
from geoseg.training.losses import build_loss, cross_entropy_loss, dice_loss, jaccard_loss
from geoseg.training.sampling import (
    IGNORE_INDEX,
    class_balanced_chips,
    index_class_pixels,
    prepare_scene,
    random_chips,
    read_chip,
    read_validation_chip,
    validation_chips,
)
from tests.conftest import ORIGIN, coordinate_image

SCALING = InputScaling(units="dn", method="scene_percentile", percentiles=(0.0, 100.0))
BANDS = ["blue", "green"]


# ---------------------------------------------------------------- augmentation
def test_eight_distinct_symmetries_move_labels_with_pixels() -> None:
    image = coordinate_image(2, 4, 4).astype(np.float32)
    labels = image[0].astype(np.int64)
    seen = set()
    for symmetry in range(SYMMETRIES):
        moved_image, moved_labels = apply_symmetry(image, labels, symmetry)
        np.testing.assert_array_equal(moved_image[0].astype(np.int64), moved_labels)
        seen.add(moved_labels.tobytes())
    assert len(seen) == SYMMETRIES
    _, same_labels = apply_symmetry(image, labels, 0)
    np.testing.assert_array_equal(same_labels, labels)


def test_radiometric_jitter_is_one_gain_and_offset_per_band() -> None:
    image = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    jittered = radiometric_jitter(image, np.random.default_rng(1), gain_std=0.1, offset_std=0.05)
    assert jittered.dtype == np.float32
    for band in range(3):
        gain, offset = np.polyfit(image[band].ravel(), jittered[band].ravel(), 1)
        residual = jittered[band] - (gain * image[band] + offset)
        assert np.abs(residual).max() < 1e-5
        assert gain != pytest.approx(1.0, abs=1e-6)
    again = radiometric_jitter(image, np.random.default_rng(1), gain_std=0.1, offset_std=0.05)
    np.testing.assert_array_equal(jittered, again)
    same = radiometric_jitter(image, np.random.default_rng(1), gain_std=0.0, offset_std=0.0)
    np.testing.assert_allclose(same, image)


# ---------------------------------------------------------------- losses
@pytest.mark.parametrize("loss", [cross_entropy_loss, dice_loss, jaccard_loss])
def test_losses_ignore_ignored_pixels(loss: Callable[..., torch.Tensor]) -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[:, :4] = IGNORE_INDEX
    value = loss(logits, labels, ignore_index=IGNORE_INDEX)
    value.backward()
    assert logits.grad is not None
    assert torch.all(logits.grad[:, :, :4] == 0)
    changed = logits.detach().clone()
    changed[:, :, :4] = 50.0
    assert loss(changed, labels, ignore_index=IGNORE_INDEX).item() == pytest.approx(value.item())


def test_overlap_losses_vanish_for_a_perfect_prediction() -> None:
    labels = torch.randint(0, 3, (1, 16, 16))
    logits = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float() * 100
    assert dice_loss(logits, labels, ignore_index=IGNORE_INDEX).item() < 1e-3
    assert jaccard_loss(logits, labels, ignore_index=IGNORE_INDEX).item() < 1e-3
    combined = build_loss(["cross_entropy", "dice", "jaccard"], ignore_index=IGNORE_INDEX)
    assert combined(logits, labels).item() < 1e-2
    all_ignored = torch.full((1, 16, 16), IGNORE_INDEX)
    assert combined(logits, all_ignored).item() == 0.0
    with pytest.raises(ConfigError, match="loss"):
        build_loss([], ignore_index=IGNORE_INDEX)


# ---------------------------------------------------------------- sampling
def _scene_files(make_geotiff: Callable[..., Path], tmp_path: Path) -> dict[str, Path]:
    image = coordinate_image(2, 32, 32)
    image[:, 0, 0] = 65535  # one nodata pixel
    labels = (np.arange(32 * 32).reshape(32, 32) % 3).astype(np.uint8)
    fine = np.repeat(np.repeat(labels, 2, axis=0), 2, axis=1)  # 15 m grid, same area
    fine[-2:, -2:] = 255  # nodata at the bottom-right pixel
    mask = np.ones((32, 32), dtype=np.uint8)
    mask[:, 16:] = 0
    polygons = gpd.GeoDataFrame(
        {"kind": ["tree", "field", "cloud"]},
        geometry=[
            box(ORIGIN[0], ORIGIN[1] - 4 * 30, ORIGIN[0] + 4 * 30, ORIGIN[1]),  # rows 0-3, cols 0-3
            box(ORIGIN[0] + 300, ORIGIN[1] - 300, ORIGIN[0] + 360, ORIGIN[1] - 240),  # r8-9 c10-11
            box(ORIGIN[0] + 600, ORIGIN[1] - 600, ORIGIN[0] + 630, ORIGIN[1] - 570),
        ],
        crs="EPSG:32612",
    )
    vector = tmp_path / "polygons.gpkg"
    polygons.to_crs("EPSG:4326").to_file(vector)  # another CRS: reprojected on read
    return {
        "image": make_geotiff(image, name="image.tif", nodata=65535),
        "labels": make_geotiff(
            fine,
            name="labels.tif",
            nodata=255,
            transform=Affine(15.0, 0, ORIGIN[0], 0, -15.0, ORIGIN[1]),
        ),
        "mask": make_geotiff(mask, name="mask.tif"),
        "vector": vector,
        "expected": make_geotiff(labels, name="expected.tif"),
    }


def test_dense_labels_on_another_grid_with_nodata_and_mask(
    make_geotiff: Callable[..., Path], tmp_path: Path
) -> None:
    files = _scene_files(make_geotiff, tmp_path)
    spec = SceneSpec(
        image=str(files["image"]),
        band_indexes=[1, 2],
        dense_labels={"path": str(files["labels"]), "codes": {0: 10, 1: 11}},
        validation_windows=[{"row": 0, "col": 0, "height": 32, "width": 32}],
        region_mask=str(files["mask"]),
    )
    scene = prepare_scene(spec, BANDS, [10, 11], SCALING, tmp_path)
    inputs, labels = read_chip(scene, PixelWindow(0, 0, 32, 32))
    expected_codes = np.arange(32 * 32).reshape(32, 32) % 3
    expected = np.where(expected_codes == 2, IGNORE_INDEX, expected_codes)  # code 2 unlisted
    expected[:, 16:] = IGNORE_INDEX  # region mask
    expected[0, 0] = IGNORE_INDEX  # image nodata
    np.testing.assert_array_equal(labels, expected)
    assert inputs.shape == (2, 32, 32)
    assert inputs[:, 0, 0].tolist() == [0.0, 0.0]
    assert inputs.min() >= 0.0 and inputs.max() <= 1.0  # percentiles 0-100 -> 0..1
    # labels nodata (bottom-right) is ignored too
    _, corner = read_chip(scene, PixelWindow(24, 24, 8, 8))
    assert corner[-1, -1] == IGNORE_INDEX


def test_sparse_labels_rasterise_only_labelled_polygons(
    make_geotiff: Callable[..., Path], tmp_path: Path
) -> None:
    files = _scene_files(make_geotiff, tmp_path)
    spec = SceneSpec(
        image=str(files["image"]),
        band_indexes=[1, 2],
        sparse_labels={
            "path": str(files["vector"]),
            "field": "kind",
            "codes": {"tree": 1, "field": 0},
        },
        validation_windows=[{"row": 16, "col": 16, "height": 16, "width": 16}],
        train_windows=[{"row": 0, "col": 0, "height": 16, "width": 16}],
    )
    scene = prepare_scene(spec, BANDS, [0, 1], SCALING, tmp_path)
    assert len(scene.polygons) == 2  # "cloud" has no class
    _, labels = read_chip(scene, PixelWindow(0, 0, 16, 16))
    expected = np.full((16, 16), IGNORE_INDEX)
    expected[0:4, 0:4] = 1
    expected[8:10, 10:12] = 0
    expected[0, 0] = IGNORE_INDEX  # image nodata
    np.testing.assert_array_equal(labels, expected)


def test_chips_stay_inside_training_windows_and_validation_counts_once(
    make_geotiff: Callable[..., Path], tmp_path: Path
) -> None:
    files = _scene_files(make_geotiff, tmp_path)
    spec = SceneSpec(
        image=str(files["image"]),
        band_indexes=[1, 2],
        dense_labels={"path": str(files["expected"])},
        train_windows=[{"row": 0, "col": 0, "height": 20, "width": 32}],
        validation_windows=[{"row": 20, "col": 0, "height": 12, "width": 32}],
    )
    scene = prepare_scene(spec, BANDS, [0, 1, 2], SCALING, tmp_path)
    generator = np.random.default_rng(3)
    for _, window in random_chips([scene], 50, 8, generator):
        assert window.row >= 0 and window.row_stop <= 20
        assert window.col >= 0 and window.col_stop <= 32
    counted = 0
    for chip_scene, chip, window in validation_chips([scene], 8):
        _, labels = read_validation_chip(chip_scene, chip, window)
        counted += int((labels != IGNORE_INDEX).sum())
    assert counted == 12 * 32


def test_class_balanced_chips_contain_the_drawn_classes(
    make_geotiff: Callable[..., Path], tmp_path: Path
) -> None:
    labels = np.zeros((64, 64), dtype=np.uint8)
    labels[50:52, 3:5] = 1  # 4 pixels of a rare class
    image = coordinate_image(2, 64, 64)
    spec = SceneSpec(
        image=str(make_geotiff(image, name="image.tif")),
        band_indexes=[1, 2],
        dense_labels={"path": str(make_geotiff(labels, name="labels.tif"))},
        train_windows=[
            {"row": 0, "col": 0, "height": 40, "width": 64},
            {"row": 40, "col": 0, "height": 24, "width": 32},
        ],
        validation_windows=[{"row": 40, "col": 32, "height": 24, "width": 32}],
    )
    scene = prepare_scene(spec, BANDS, [0, 1], SCALING, tmp_path)
    pixels = index_class_pixels(scene, 2, tile=16)
    np.testing.assert_array_equal(pixels.counts, [40 * 64 + 24 * 32 - 4, 4])
    assert sorted(map(tuple, pixels.per_class[1][:, 1:].tolist())) == [
        (50, 3),
        (50, 4),
        (51, 3),
        (51, 4),
    ]
    generator = np.random.default_rng(5)
    chips = class_balanced_chips([scene], [pixels], 200, 16, 0.0, generator)
    with_rare = 0
    for _, window in chips:
        assert any(window.intersection(train) == window for train in scene.train_windows)
        _, chip_labels = read_chip(scene, window)
        with_rare += int((chip_labels == 1).any())
    assert 70 <= with_rare <= 130  # classes equally often (power 0)
    proportional = class_balanced_chips([scene], [pixels], 200, 16, 1.0, generator)
    assert sum(int((read_chip(scene, w)[1] == 1).any()) for _, w in proportional) < 30


def test_validation_score_labelled_skips_classes_without_validation_labels() -> None:
    matrix = np.array([[8, 2, 0], [0, 0, 0], [1, 0, 9]])  # truth rows; class 1 never true
    iou = [8 / 11, 0.0, 9 / 10]
    assert validation_score(matrix, "mean_iou") == pytest.approx(np.mean(iou))
    assert validation_score(matrix, "mean_iou_labelled") == pytest.approx((iou[0] + iou[2]) / 2)


def test_training_threads_are_restored_afterwards() -> None:
    """A process that trains and then predicts keeps its own torch thread count."""
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("a failed epoch")
    assert torch.get_num_threads() == before
