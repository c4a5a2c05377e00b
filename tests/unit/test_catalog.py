from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from geoseg.bbox import make_bbox
from geoseg.catalog import stac as catalog_module
from geoseg.catalog.stac import (
    EMBEDDED,
    entry_from_item,
    open_catalog,
    parse_datetime_range,
    region_file,
    search,
    verify_entry,
)
from geoseg.errors import BBoxError, CatalogError, ChecksumError
from geoseg.io.checksums import read_sha256sums
from geoseg.io.raster import read_info

ZION_LONLAT = (-113.10, 37.15, -112.95, 37.30)


def test_embedded_catalog_matches_the_data_files(shared_data: Path) -> None:
    index = open_catalog()
    sums = read_sha256sums(shared_data / "SHA256SUMS")
    assert {entry.collection for entry in index.entries} == {
        "landsat",
        "reference-maps",
        "regions",
    }
    for entry in index.entries:
        for asset in (entry.data, *entry.other_files):
            assert not Path(asset.href).is_absolute() and ".." not in asset.href
            assert asset.sha256 == sums[asset.href], asset.href
        if entry.grid is not None:
            assert read_info(shared_data / entry.data.href).grid == entry.grid


def test_scene_bands_and_scaling_come_from_the_catalog() -> None:
    scenes = {entry.id: entry for entry in open_catalog().collection("landsat")}
    zion = scenes["zion-landsat8-20150818"]
    assert zion.band_indexes(["nir", "red", "green", "blue"]) == [4, 3, 2, 1]
    assert {band.nodata for band in zion.bands} == {65535}
    chiapas = scenes["chiapas-landsat7-20020416"]
    # the file lacks a nodata tag; the catalog records -9999 and reflectance x 10000
    assert chiapas.band_indexes(["swir22", "lwir"]) == [6, 7]
    reflectance = [band for band in chiapas.bands if band.unit == "reflectance"]
    assert len(reflectance) == 6 and {band.scale for band in reflectance} == {1e-4}
    assert {band.nodata for band in chiapas.bands} == {-9999}
    with pytest.raises(CatalogError, match="has no band coastal"):
        zion.band_indexes(["coastal"])


def test_search_by_bbox_in_any_crs_and_datetime() -> None:
    lonlat = search(make_bbox(ZION_LONLAT), "2015-08-18")
    utm = search(make_bbox((313500, 4113300, 327200, 4130200), "EPSG:32612"), "2015-08/2015-09")
    assert (
        [entry.id for entry in lonlat] == [entry.id for entry in utm] == ["zion-landsat8-20150818"]
    )
    chiapas = search(make_bbox((-93.4, 15.6, -93.2, 15.8)), "1999/2002")
    assert [entry.id for entry in chiapas] == [
        "chiapas-landsat7-19991118",
        "chiapas-landsat7-20020416",
    ]
    labels = search(make_bbox(ZION_LONLAT), None, collection="reference-maps")
    assert {entry.id for entry in labels} == {"zion-nlcd2011", "zion-nlcd2011-generalized"}


def test_search_errors_list_coverage_and_dates() -> None:
    with pytest.raises(BBoxError, match=r"outside every scene(.|\n)*zion-landsat8-20150818: \["):
        search(make_bbox((10, 10, 11, 11)))
    with pytest.raises(CatalogError, match=r"scenes there: zion-landsat8-20150818 \(2015-08-18"):
        search(make_bbox(ZION_LONLAT), "2016-01-01/2016-12-31")


def test_parse_datetime_range() -> None:
    start, end = parse_datetime_range("2015-08-18")
    assert start == datetime(2015, 8, 18, tzinfo=UTC)
    assert end.date() == start.date() and end.hour == 23
    assert parse_datetime_range("../2000")[1].year == 2000
    assert parse_datetime_range("2000/..")[0].year == 2000
    assert parse_datetime_range("2015-02")[1].day == 28
    for bad in ("yesterday", "2016/2015", "2015/2016/2017"):
        with pytest.raises(CatalogError):
            parse_datetime_range(bad)


@pytest.fixture
def corrupted_data_dir(tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the data dir (symlinks) whose Zion scene has one byte flipped."""
    copy = tmp_path / "data"
    for path in shared_data.rglob("*"):
        target = copy / path.relative_to(shared_data)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    scene = copy / "zion" / "zion_landsat8_20150818_b2345.tif"
    scene.unlink()
    shutil.copyfile(shared_data / "zion" / "zion_landsat8_20150818_b2345.tif", scene)
    with open(scene, "r+b") as handle:
        handle.seek(500_000)
        byte = handle.read(1)
        handle.seek(500_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setenv("GEOSEG_DATA_DIR", str(copy))
    return copy


def test_corrupted_file_fails_its_checksum(corrupted_data_dir: Path) -> None:
    entries = {entry.id: entry for entry in open_catalog().collection("landsat")}
    with pytest.raises(ChecksumError, match=r"zion_landsat8_20150818_b2345\.tif: SHA-256 is"):
        verify_entry(entries["zion-landsat8-20150818"])
    # the other files are intact
    assert verify_entry(entries["chiapas-landsat7-19991118"]).startswith(str(corrupted_data_dir))


def test_missing_file_is_a_catalog_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOSEG_DATA_DIR", str(tmp_path))
    scene = open_catalog().collection("landsat")[0]
    with pytest.raises(CatalogError, match="missing from the data directory"):
        verify_entry(scene)


def test_regions_by_catalog_id(shared_data: Path) -> None:
    assert region_file("rondonia") == shared_data / "rondonia_prodes" / "rondonia.shp"
    with pytest.raises(CatalogError, match=r"catalog regions: .*zion-park"):
        region_file("atlantis")


def test_bad_catalog_locations(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no STAC catalog there"):
        open_catalog(tmp_path)
    (tmp_path / "catalog.json").write_text(
        json.dumps(
            {"type": "Catalog", "id": "x", "stac_version": "1.1.0", "description": "x", "links": []}
        ),
        encoding="utf-8",
    )
    with pytest.raises(CatalogError, match="geoseg:href_base"):
        open_catalog(tmp_path)


def test_stac_api_url_goes_through_pystac_client(monkeypatch: pytest.MonkeyPatch) -> None:
    item = json.loads(
        (
            EMBEDDED.parent / "landsat" / "zion-landsat8-20150818" / "zion-landsat8-20150818.json"
        ).read_text(encoding="utf-8")
    )
    item["collection"] = "landsat"
    calls: list[dict[str, Any]] = []

    def fake_search(url: str, **kwargs: Any) -> list[dict[str, Any]]:
        calls.append({"url": url, **kwargs})
        return [item]

    monkeypatch.setattr(catalog_module, "search_stac_api", fake_search)
    found = search(make_bbox((179, 0, -179, 1)), "2015", location="https://stac.example/api")
    assert [entry.id for entry in found] == ["zion-landsat8-20150818"]
    # an antimeridian bbox reaches the API as its two halves
    assert calls[0]["bboxes"] == [(179, 0, 180, 1), (-180, 0, -179, 1)]
    assert entry_from_item(item).grid is not None


def test_committed_catalog_is_up_to_date(shared_data: Path) -> None:
    from data_catalog.build import build_catalog

    built = {
        item.id: item.to_dict(include_self_link=False, transform_hrefs=False)
        for item in build_catalog().get_items(recursive=True)
    }
    committed = {entry.id: entry for entry in open_catalog().entries}
    assert set(built) == set(committed)
    for identifier, item in built.items():
        assert (
            entry_from_item({**item, "collection": committed[identifier].collection})
            == (committed[identifier])
        )


def test_catalog_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    from geoseg.cli import main

    main(["catalog", "list", "--collection", "regions"])
    listed = capsys.readouterr().out
    assert "zion-park" in listed and "rondonia" in listed and "zion-landsat8" not in listed
    main(
        [
            "catalog",
            "search",
            "--bbox",
            "313000,4113000,327000,4130000",
            "--bbox-crs",
            "EPSG:32612",
            "--datetime",
            "2015",
            "--json",
        ]
    )
    found = json.loads(capsys.readouterr().out)
    assert [row["id"] for row in found] == ["zion-landsat8-20150818"]
    assert found[0]["bands"] == "blue,green,red,nir" and found[0]["crs"] == "EPSG:32612"
    with pytest.raises(SystemExit) as exit_info:
        main(["catalog", "search", "--bbox", "1,2,3"])
    assert exit_info.value.code == 2  # bad input
    assert "four numbers" in capsys.readouterr().err
