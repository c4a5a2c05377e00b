"""Instances across tile and chunk seams: each object once, for any chunk size.

A fake detector sees the known objects of a synthetic scene that touch a tile,
cut by the tile's edges, so the test is deterministic and fast.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from geoseg.grid import PixelWindow
from geoseg.predict.instances import (
    Detection,
    InstanceSettings,
    detections_from_masks,
    paint_window,
    resolve_instances,
)
from geoseg.predict.tiling import TileLayout, make_layout

HEIGHT, WIDTH = 190, 230


def synthetic_objects() -> NDArray[np.int64]:
    """Object ids on the scene: rectangles and a disc across tile seams (tile 64, overlap 24)."""
    objects = np.zeros((HEIGHT, WIDTH), dtype=np.int64)
    objects[30:52, 30:58] = 1  # inside the first tile only
    objects[20:50, 60:100] = 2  # across the first vertical seam band
    objects[70:110, 70:115] = 3  # across a seam corner (four tiles)
    rows, cols = np.ogrid[:HEIGHT, :WIDTH]
    objects[(rows - 150) ** 2 + (cols - 180) ** 2 <= 18**2] = 4  # a disc near the bottom right
    objects[120:135, 5:200] = 5  # a long object across every column of tiles
    objects[175:190, 0:12] = 6  # on the scene's corner
    return objects


def fake_detections(
    layout: TileLayout, objects: NDArray[np.int64], shrink_cut: bool
) -> list[Detection]:
    """Each object touching a tile, as that tile sees it (cut by its edges).

    With ``shrink_cut``, a cut object loses its last column and row at the cut (a
    detector's uncertain edge), so matching must tolerate imperfect masks.
    """
    settings = InstanceSettings()
    found: list[Detection] = []
    for tile in range(layout.count):
        window = layout.window(tile)
        view = objects[window.clip(HEIGHT, WIDTH).slices()]
        masks, scores = [], []
        for object_id in np.unique(view[view > 0]):
            mask = np.zeros((layout.tile, layout.tile), dtype=np.float32)
            mask[: view.shape[0], : view.shape[1]] = view == object_id
            if shrink_cut:
                mask[-1, :] = 0
                mask[:, -1] = 0
            masks.append(mask)
            scores.append(0.9 - 0.01 * int(object_id))
        if masks:
            found += detections_from_masks(
                layout,
                tile,
                np.stack(masks),
                np.array(scores, dtype=np.float32),
                np.zeros(len(masks), dtype=np.int64),
                settings,
            )
    return found


def painted(layout: TileLayout, detections: list[Detection], chunk: int) -> NDArray[np.uint32]:
    instances = resolve_instances(layout, detections, InstanceSettings())
    scene = PixelWindow(0, 0, HEIGHT, WIDTH)
    out = np.zeros((HEIGHT, WIDTH), dtype=np.uint32)
    for window in scene.chunks(chunk):
        ids, classes = paint_window(layout, instances, window)
        out[window.slices()] = ids
        assert np.array_equal(classes > 0, ids > 0)
    return out


@pytest.mark.parametrize("chunk", [17, 40, 64, 100, 256])
def test_each_object_is_one_instance_for_every_chunk_size(chunk: int) -> None:
    objects = synthetic_objects()
    layout = make_layout(HEIGHT, WIDTH, 64, 24)
    ids = painted(layout, fake_detections(layout, objects, shrink_cut=False), chunk)
    # one instance per object, exactly its pixels, ids in row-major order of the boxes
    assert sorted(np.unique(ids[ids > 0]).tolist()) == [1, 2, 3, 4, 5, 6]
    for object_id in range(1, 7):
        values = np.unique(ids[objects == object_id])
        assert values.size == 1 and values[0] > 0
        assert np.array_equal(ids == values[0], objects == object_id)
    assert np.array_equal(ids, painted(layout, fake_detections(layout, objects, False), WIDTH))


@pytest.mark.parametrize("chunk", [23, 64, 230])
def test_imperfect_cut_masks_still_give_one_instance_each(chunk: int) -> None:
    objects = synthetic_objects()
    layout = make_layout(HEIGHT, WIDTH, 64, 24)
    ids = painted(layout, fake_detections(layout, objects, shrink_cut=True), chunk)
    for object_id in range(1, 7):
        values = np.unique(ids[objects == object_id])
        assert values[values > 0].size == 1, f"object {object_id} split into {values}"
    assert np.unique(ids[ids > 0]).size == 6
    # owner tiles decide their pixels: nothing outside the objects, the seams are not holes
    assert not np.any(ids[objects == 0])
    assert np.count_nonzero(ids) >= 0.97 * np.count_nonzero(objects)


def test_low_scores_are_dropped_and_duplicates_in_one_band_merge() -> None:
    layout = make_layout(64, 104, 64, 24)  # two tiles sharing columns 40-63
    mask = np.zeros((1, 64, 64), dtype=np.float32)
    mask[0, 10:20, 45:60] = 1.0
    settings = InstanceSettings()
    left = detections_from_masks(
        layout, 0, mask, np.array([0.8], np.float32), np.zeros(1, np.int64), settings
    )
    shifted = np.zeros_like(mask)
    shifted[0, 10:20, 5:20] = 1.0  # the same pixels seen from the right tile
    right = detections_from_masks(
        layout, 1, shifted, np.array([0.7], np.float32), np.zeros(1, np.int64), settings
    )
    faint = detections_from_masks(
        layout, 1, shifted, np.array([0.2], np.float32), np.zeros(1, np.int64), settings
    )
    assert faint == []
    instances = resolve_instances(layout, left + right, settings)
    assert len(instances) == 1 and instances[0].score == pytest.approx(0.8)
    ids, _ = paint_window(layout, instances, PixelWindow(0, 0, 64, 104))
    assert np.count_nonzero(ids) == 150
