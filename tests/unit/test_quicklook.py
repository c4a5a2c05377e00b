from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geoseg.errors import InputError
from geoseg.io.report import save_png
from geoseg.report.quicklook import LegendClass, class_picture, quicklook_figure, stretch_rgb
from geoseg.report.summary import class_area_table

CLASSES = [LegendClass(1, "water", (31, 120, 180)), LegendClass(4, "forest", (51, 160, 44))]


def test_stretch_maps_percentiles_and_whitens_invalid() -> None:
    values = np.stack([np.arange(100, dtype=np.float32).reshape(10, 10)] * 3)
    valid = np.ones((10, 10), dtype=bool)
    valid[0, 0] = False
    picture = stretch_rgb(values, valid)
    assert picture.shape == (10, 10, 3) and picture.dtype == np.uint8
    assert tuple(picture[0, 0]) == (255, 255, 255)
    assert picture[0, 1, 0] == 0 and picture[9, 9, 0] == 255
    assert np.all(np.diff(picture[5, :, 0].astype(int)) >= 0)
    with pytest.raises(InputError, match="3 bands"):
        stretch_rgb(values[:2], valid)


def test_class_picture_colours_and_clears_unknown_ids() -> None:
    labels = np.array([[1, 4], [255, 7]], dtype=np.uint8)
    picture = class_picture(labels, CLASSES)
    assert tuple(picture[0, 0]) == (31, 120, 180, 255)
    assert tuple(picture[0, 1]) == (51, 160, 44, 255)
    assert picture[1, 0, 3] == 0 and picture[1, 1, 3] == 0


def test_quicklook_png_shows_both_panels_and_is_reproducible(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    labels = np.where(np.arange(80)[None, :] < 40, 1, 4).repeat(60, axis=0).astype(np.uint8)
    paths = []
    for name in ("a.png", "b.png"):
        figure = quicklook_figure(rgb, labels, CLASSES, title="test", caption="Landsat: USGS")
        paths.append(save_png(figure, tmp_path / name, dpi=60))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    image = np.asarray(Image.open(paths[0]).convert("RGB"))
    colours = {tuple(pixel) for pixel in image.reshape(-1, 3)}
    assert (31, 120, 180) in colours and (51, 160, 44) in colours
    with pytest.raises(InputError, match="differ in size"):
        quicklook_figure(rgb, labels[:10], CLASSES, title="x")


def test_class_area_table_lists_every_class() -> None:
    table = class_area_table(
        np.array([4, 4, 1]), np.array([900.0, 1800.0, 300.0]), {1: "water", 4: "forest", 5: "shrub"}
    )
    assert table["class_id"].tolist() == [1, 4, 5]
    assert table["polygons"].tolist() == [1, 2, 0]
    assert table["area_ha"].tolist() == [0.03, 0.27, 0.0]
    assert table["share_percent"].sum() == pytest.approx(100.0)
