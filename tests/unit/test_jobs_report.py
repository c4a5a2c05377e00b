"""The report page (pure) and the real backend's region helpers, on tiny inputs."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import Polygon, box

from geoseg.errors import JobError
from geoseg.io.vector import read_vector, write_layers
from geoseg.jobs.history import per_region_polygons
from geoseg.jobs.spec import AreaSpec
from geoseg.report.html import ReportInputs, build_report, map_svg
from workflows.jobs import area_bbox, regions_file


def inputs(**changes: object) -> ReportInputs:
    values: dict[str, object] = {
        "title": "job <script>alert(1)</script>",
        "facts": {"model": "m & n"},
        "regions": pd.DataFrame({"region_id": ["a", "b"], "forest_loss_ha": [1.5, 7.25]}),
        "polygons": gpd.GeoDataFrame(
            {"region_id": ["a"]},
            geometry=[Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [[(2, 2), (4, 2), (4, 4)]])],
            crs="EPSG:32615",
        ),
        "quicklook": None,
        "timeseries": pd.DataFrame(
            {
                "region_id": ["a", "b"],
                "period_end": ["2002-04-16"] * 2,
                "forest_loss_ha": [1.5, 7.25],
            }
        ),
    }
    values.update(changes)
    return ReportInputs(**values)  # type: ignore[arg-type]


def test_report_is_escaped_offline_and_deterministic() -> None:
    page = build_report(inputs())
    assert page == build_report(inputs())
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "m &amp; n" in page
    # the table lists regions with the most loss first, numbers right-aligned
    assert page.index("<td>b</td>") < page.index("<td>a</td>")
    assert '<td class="number">7.25</td>' in page
    # no quicklook: grey background; the polygon with its hole is one even-odd path
    assert 'fill="#d9d9d9"' in page
    assert page.count('class="loss-polygon"') == 1
    assert page.count(" Z") >= 2


def test_map_places_polygons_in_the_pictures_pixels() -> None:
    import numpy as np

    from geoseg.report.html import MAP_WIDTH, Quicklook

    quicklook = Quicklook(np.zeros((10, 20, 3), np.uint8), (0.0, 0.0, 200.0, 100.0), "EPSG:32615")
    polygons = gpd.GeoDataFrame(
        {"region_id": ["a"]}, geometry=[box(0, 50, 100, 100)], crs="EPSG:32615"
    )
    svg = map_svg(polygons, quicklook)
    assert 'viewBox="0 0 20 10"' in svg
    assert f'width="{MAP_WIDTH}" height="{MAP_WIDTH // 2}"' in svg
    # the box's top-left corner (0, 100) is pixel (0, 0); (100, 50) is pixel (10, 5)
    assert "0.00,0.00" in svg and "10.00,5.00" in svg


def test_regions_area_and_files(tmp_path: Path) -> None:
    regions = gpd.GeoDataFrame(
        {"code": ["r1", "r2", "r3"]},
        geometry=[box(0, 0, 10, 10), box(20, 0, 30, 10), box(0, 40, 10, 50)],
        crs="EPSG:32615",
    )
    path = tmp_path / "regions.gpkg"
    write_layers(path, {"regions": regions})
    area = AreaSpec(regions=path, region_id_field="code", region_ids=("r1", "r2"))
    assert area_bbox(area).bounds == (0.0, 0.0, 30.0, 10.0)
    (tmp_path / "work").mkdir()
    written, field = regions_file(area, tmp_path / "work")
    assert field == "code"
    assert sorted(read_vector(written)["code"]) == ["r1", "r2"]
    with pytest.raises(JobError, match=r"no region with code in \['r9'\]"):
        area_bbox(AreaSpec(regions=path, region_id_field="code", region_ids=("r9",)))

    bbox_area = AreaSpec(bbox=(0, 0, 30, 10), bbox_crs="EPSG:32615")
    (tmp_path / "work2").mkdir()
    written, field = regions_file(bbox_area, tmp_path / "work2")
    single = read_vector(written)
    assert (field, list(single["region_id"])) == ("region_id", ["bbox"])
    assert single.total_bounds.tolist() == [0.0, 0.0, 30.0, 10.0]


def test_polygons_overlapping_two_regions_count_in_both() -> None:
    polygons = gpd.GeoDataFrame(
        {"region_ids": ["a,b", "b", ""]},
        geometry=[box(0, 0, 1, 1), box(2, 2, 3, 3), box(5, 5, 6, 6)],
        crs="EPSG:32615",
    )
    tagged = per_region_polygons(polygons)
    assert list(tagged["region_id"]) == ["a", "b", "b"]
    assert tagged.crs == polygons.crs
