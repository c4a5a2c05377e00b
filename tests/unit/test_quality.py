"""Quality-band conventions, mask growth and the catalog's quality bands (geoseg.quality)."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import ndimage

from geoseg.catalog.mosaic import mosaic_source
from geoseg.catalog.stac import entry_from_item, open_catalog, verify_entry
from geoseg.errors import CatalogError, InputError
from geoseg.grid import PixelWindow
from geoseg.limits import DEFAULT_MASK_BUFFER
from geoseg.quality import (
    Condition,
    Convention,
    QualityMask,
    decode,
    grow_mask,
    mask_with_halo,
    quality_mask,
    saturated,
    stac_fields,
)

CHIAPAS_2002 = "chiapas_twodate/LE70220492002106EDC00_stack.gtif"
CHIAPAS_1999 = "chiapas_twodate/LE70220491999322EDC01_stack.gtif"


def qa_pixel(*bits: int, cloud: int = 1, shadow: int = 1, snow: int = 1, cirrus: int = 1) -> int:
    """A Landsat Collection 2 QA_PIXEL value from the documented layout.

    Single-bit flags at ``bits``; two-bit confidences (0 none ... 3 high) at
    8-9 cloud, 10-11 cloud shadow, 12-13 snow/ice, 14-15 cirrus.
    """
    value = sum(1 << bit for bit in bits)
    return value | cloud << 8 | shadow << 10 | snow << 12 | cirrus << 14


def band(path: Path, index: int) -> NDArray[Any]:
    with rasterio.open(path) as dataset:
        return dataset.read(index)


# --- conventions, from real values or the documented tables ---------------------------------


def test_fmask_codes_of_the_real_chiapas_band_8(shared_data: Path) -> None:
    codes = band(shared_data / CHIAPAS_2002, 8)
    mask = quality_mask(codes, Convention.FMASK)
    # the codes there: 0 = 45,696 px, 2 = 4,141 px (shadow), 4 = 12,663 px (cloud)
    assert mask.masked.sum() == 4141 + 12663
    assert (mask.masked == np.isin(codes, [2, 4])).all()
    assert (mask.growing == mask.masked).all()  # cloud and shadow both grow
    found = decode(codes, Convention.FMASK)
    assert found[Condition.CLOUD].sum() == 12663
    assert found[Condition.CLOUD_SHADOW].sum() == 4141
    assert not found[Condition.SNOW].any() and not found[Condition.FILL].any()
    clear_1999 = band(shared_data / CHIAPAS_1999, 8)
    assert not quality_mask(clear_1999, Convention.FMASK).masked.any()


def test_fmask_every_code() -> None:
    codes = np.array([[0, 1, 2, 3, 4, 255]], dtype=np.uint8)
    mask = quality_mask(codes, Convention.FMASK)
    assert mask.masked.tolist() == [[False, False, True, True, True, True]]
    # snow and fill are masked as they are, never grown
    assert mask.growing.tolist() == [[False, False, True, False, True, False]]


def test_qa_pixel_bits() -> None:
    clear = qa_pixel(6, cloud=1, shadow=1, snow=1, cirrus=1)
    assert clear == 21824  # USGS's "clear, low confidence everywhere"
    water = qa_pixel(6, 7)
    assert water == 21952
    values = {
        "clear": (clear, False, False),
        "water": (water, False, False),
        "fill": (1, True, False),
        "dilated cloud": (qa_pixel(1), True, True),
        "cirrus": (qa_pixel(2, cirrus=3), True, True),
        "cloud": (qa_pixel(1, 3, cloud=3), True, True),
        "cloud shadow": (qa_pixel(4, shadow=3), True, True),
        "snow": (qa_pixel(5, 6, snow=3), True, False),
        "high cloud confidence alone": (qa_pixel(6, cloud=3), False, False),
    }
    array = np.array([[value for value, _, _ in values.values()]], dtype=np.uint16)
    mask = quality_mask(array, Convention.LANDSAT_QA_PIXEL)
    assert dict(zip(values, mask.masked[0].tolist(), strict=True)) == {
        name: masked for name, (_, masked, _) in values.items()
    }
    assert dict(zip(values, mask.growing[0].tolist(), strict=True)) == {
        name: grows for name, (_, _, grows) in values.items()
    }
    found = decode(array, Convention.LANDSAT_QA_PIXEL)
    assert found[Condition.CLOUD_SHADOW][0].tolist() == [name == "cloud shadow" for name in values]


def test_sentinel2_scl_classes() -> None:
    classes = np.arange(12, dtype=np.uint8)[None, :]
    mask = quality_mask(classes, Convention.SENTINEL2_SCL)
    assert np.flatnonzero(mask.masked).tolist() == [0, 1, 3, 8, 9, 10, 11]
    assert np.flatnonzero(mask.growing).tolist() == [3, 8, 9, 10]
    found = decode(classes, Convention.SENTINEL2_SCL)
    assert np.flatnonzero(found[Condition.CLOUD]).tolist() == [8, 9]
    assert np.flatnonzero(found[Condition.SATURATED]).tolist() == [1]


def test_validity_limits_the_mask() -> None:
    codes = np.array([[4, 4]], dtype=np.int16)
    mask = quality_mask(codes, Convention.FMASK, np.array([[True, False]]))
    assert mask.masked.tolist() == [[True, False]]


def test_saturation_values() -> None:
    values = np.array([[[16000, 5, 16000]], [[3, 16000, 7]], [[16000, 16000, 16000]]])
    assert saturated(values, [16000, 16000, None]).tolist() == [[True, True, True]]
    assert saturated(values, [16000, None, None]).tolist() == [[True, False, True]]


# --- growth ------------------------------------------------------------------------------------


def test_grow_mask_is_a_square_of_side_2n_plus_1() -> None:
    mask = np.zeros((11, 11), dtype=bool)
    mask[5, 5] = True
    grown = grow_mask(mask, 3)
    assert grown.sum() == 49 and grown[2:9, 2:9].all()
    assert (grow_mask(mask, 0) == mask).all()
    with pytest.raises(InputError, match="mask buffer"):
        grow_mask(mask, -1)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    pixels=st.integers(0, 5),
    chunk=st.integers(1, 17),
)
def test_grown_mask_does_not_depend_on_the_chunks(
    seed: int, shape: tuple[int, int], pixels: int, chunk: int
) -> None:
    generator = np.random.default_rng(seed)
    codes = generator.choice([0, 0, 0, 1, 2, 3, 4, 255], size=shape).astype(np.uint8)
    # an independent whole-raster reference: chessboard distance to a cloud or shadow
    growing = np.isin(codes, [2, 4])
    distance = (
        ndimage.distance_transform_cdt(~growing, metric="chessboard") if growing.any() else None
    )
    near = np.zeros(shape, dtype=bool) if distance is None else distance <= pixels
    expected = np.isin(codes, [2, 3, 4, 255]) | near

    def read(window: PixelWindow) -> QualityMask:  # boundless: outside the raster is clear
        padded = np.zeros(window.shape, dtype=np.uint8)
        inside = window.clip(*shape)
        rows, cols = inside.shift(-window.row, -window.col).slices()
        padded[rows, cols] = codes[inside.slices()]
        return quality_mask(padded, Convention.FMASK, np.ones(window.shape, dtype=bool))

    whole = PixelWindow(0, 0, *shape)
    stitched = np.zeros(shape, dtype=bool)
    for window in whole.chunks(chunk):
        stitched[window.slices()] = mask_with_halo(read, window, pixels)
    assert (stitched == expected).all()


# --- the catalog -------------------------------------------------------------------------------


def test_catalog_declares_the_chiapas_quality_band() -> None:
    scenes = {entry.id: entry for entry in open_catalog().collection("landsat")}
    for name in ("chiapas-landsat7-19991118", "chiapas-landsat7-20020416"):
        quality = scenes[name].quality
        assert quality is not None
        assert (quality.index, quality.convention) == (8, Convention.FMASK)
        assert [b.saturation for b in scenes[name].bands[:6]] == [16000.0] * 6
    assert scenes["zion-landsat8-20150818"].quality is None


def _item_with_quality(fields: dict[str, Any]) -> dict[str, Any]:
    entry = open_catalog().collection("landsat")[0]
    catalog_file = Path(open_catalog().location).parent / "landsat" / entry.id / f"{entry.id}.json"
    import json

    item: dict[str, Any] = json.loads(catalog_file.read_text(encoding="utf-8"))
    item = copy.deepcopy(item)
    item["assets"]["data"]["raster:bands"][7] = {"data_type": "uint16", **fields}
    return item


@pytest.mark.parametrize("convention", list(Convention))
def test_stac_fields_round_trip(convention: Convention) -> None:
    fields = stac_fields(convention)
    key = (
        "classification:bitfields"
        if convention is Convention.LANDSAT_QA_PIXEL
        else "classification:classes"
    )
    assert key in fields
    entry = entry_from_item(_item_with_quality(fields))
    assert entry.quality is not None and entry.quality.convention is convention


def test_unknown_convention_is_a_catalog_error() -> None:
    with pytest.raises(CatalogError, match=r"unknown quality convention 'fmask5'.*fmask"):
        entry_from_item(_item_with_quality({"geoseg:quality": "fmask5"}))


# --- the mosaic --------------------------------------------------------------------------------


def test_mosaic_masks_cloud_shadow_and_saturation_of_the_real_scene(shared_data: Path) -> None:
    entry = {e.id: e for e in open_catalog().collection("landsat")}["chiapas-landsat7-20020416"]
    assert entry.grid is not None
    source = mosaic_source(entry.grid, [(entry, verify_entry(entry))], ["blue", "green", "red"])
    assert source.mask_buffer == DEFAULT_MASK_BUFFER
    _, valid = source.read(entry.grid.full_window)
    codes = band(shared_data / CHIAPAS_2002, 8)
    cloudy = np.isin(codes, [2, 4])
    near = ndimage.distance_transform_cdt(~cloudy, metric="chessboard") <= DEFAULT_MASK_BUFFER
    assert (valid == ~near).all()
    # chunks of any size give the same mask, and the counts add up
    windows = entry.grid.chunks(37)
    stitched = np.zeros(entry.grid.shape, dtype=bool)
    for window in windows:
        stitched[window.slices()] = source.read(window)[1]
    assert (stitched == valid).all()
    counts = sum(source.mask_counts(window) for window in windows)
    assert counts.tolist() == [[62500, int(near.sum())]]
    # without a buffer: exactly the codes; saturation (16000) lies inside the clouds here
    exact = mosaic_source(
        entry.grid, [(entry, verify_entry(entry))], ["blue", "green", "red"], mask_buffer=0
    )
    assert (exact.read(entry.grid.full_window)[1] == ~cloudy).all()
    blue = band(shared_data / CHIAPAS_2002, 1)
    assert (blue == 16000).any() and not exact.read(entry.grid.full_window)[1][blue == 16000].any()
    assert exact.unmasked().read(entry.grid.full_window)[1].all()
    assert exact.fingerprint() != source.fingerprint()


def test_a_scene_without_quality_band_is_announced() -> None:
    from geoseg.io.checkpoint import read_card
    from geoseg.models.loading import resolve_model_dir
    from workflows.staging import scene_source

    card = read_card(resolve_model_dir("landcover-landsat"))
    scenes = {entry.id: entry for entry in open_catalog().collection("landsat")}
    zion = scenes["zion-landsat8-20150818"]
    assert zion.grid is not None
    with pytest.warns(UserWarning, match=r"zion-landsat8-20150818 has no quality band"):
        source = scene_source(zion.grid, [zion], card, mask_buffer=2)
    assert source.mask_buffer == 2 and source.layers[0].quality is None
    chiapas = scenes["chiapas-landsat7-20020416"]
    assert chiapas.grid is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scene_source(chiapas.grid, [chiapas], card)
