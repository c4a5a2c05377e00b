"""The report's map furniture: ground scale bar in any CRS, masked areas, legend, date, flags."""

from __future__ import annotations

import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from affine import Affine
from pyproj import Geod, Transformer
from rasterio.crs import CRS
from shapely.geometry import box

from geoseg.change.flags import Flag
from geoseg.grid import RasterGrid
from geoseg.report.html import MAP_WIDTH, Quicklook, ReportInputs, build_report
from geoseg.report.mapping import mask_polygons, nice_length, scale_bar, unseen_mask

WGS84 = Geod(ellps="WGS84")


def _web_mercator_box(lat: float, half_width_m: float) -> tuple[float, float, float, float]:
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(10.0, lat)
    return (x - half_width_m, y - half_width_m, x + half_width_m, y + half_width_m)


def test_nice_lengths() -> None:
    assert nice_length(0.9) == pytest.approx(0.5)
    assert nice_length(1.0) == 1.0
    assert nice_length(1999.0) == 1000.0
    assert nice_length(4321.0) == 2000.0
    assert nice_length(73.0) == 50.0
    with pytest.raises(ValueError, match="positive"):
        nice_length(0.0)


@pytest.mark.parametrize("lat", [0.5, 30.0, 60.0])
def test_scale_bar_is_ground_distance_in_web_mercator(lat: float) -> None:
    bounds = _web_mercator_box(lat, 5_000.0)
    bar = scale_bar(bounds, "EPSG:3857", 1000)
    # independent: the geodesic length of the bar's pixels along the map's middle row
    to_lonlat = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    middle = (bounds[1] + bounds[3]) / 2
    start_x = (bounds[0] + bounds[2]) / 2 - bar.pixels * 5.0  # 10 m of map per pixel
    lon0, lat0 = to_lonlat.transform(start_x, middle)
    lon1, lat1 = to_lonlat.transform(start_x + bar.pixels * 10.0, middle)
    _, _, ground = WGS84.inv(lon0, lat0, lon1, lat1)
    assert ground == pytest.approx(bar.length_m, rel=1e-3)
    # Web Mercator on WGS 84 stretches a parallel by cos(lat) / sqrt(1 - e2 sin2(lat)):
    # at 60 N a map metre is about half a ground metre
    e2 = 0.00669437999014
    stretch = np.sqrt(1 - e2 * np.sin(np.radians(lat)) ** 2) / np.cos(np.radians(lat))
    assert bar.pixels * 10.0 == pytest.approx(bar.length_m * stretch, rel=1e-4)


def test_scale_bar_in_utm_and_lonlat() -> None:
    utm = scale_bar((462405.0, 1734315.0, 469905.0, 1741815.0), "EPSG:32615", 250)
    assert utm.length_m == 1000.0 and utm.label == "1 km"
    # UTM 15N near 15.7 N, 3.3 deg west of the central meridian: scale factor about 0.9997
    assert utm.pixels == pytest.approx(1000.0 / 30.0, rel=1e-3)
    lonlat = scale_bar((-93.34, 15.69, -93.29, 15.75), "EPSG:4326", 500)
    _, _, width = WGS84.inv(-93.34, 15.72, -93.29, 15.72)
    assert lonlat.length_m == 1000.0
    assert lonlat.pixels == pytest.approx(1000.0 / (width / 500), rel=1e-4)


def test_masked_pixels_become_polygons_in_the_grids_crs() -> None:
    valid_before = np.ones((4, 5), bool)
    valid_after = np.ones((4, 5), bool)
    valid_before[0, 0] = False
    valid_after[2:4, 3:5] = False
    grid = RasterGrid(CRS.from_epsg(32615), Affine(30.0, 0.0, 0.0, 0.0, -30.0, 120.0), 4, 5)
    polygons = mask_polygons(unseen_mask(valid_before, valid_after), grid)
    assert polygons.crs == "EPSG:32615"
    assert sorted(polygons.area) == [900.0, 3600.0]
    assert polygons.geometry.iloc[0].equals(box(0, 90, 30, 120)) or polygons.geometry.iloc[
        1
    ].equals(box(0, 90, 30, 120))


def _inputs(flags: tuple[Flag, ...] = ()) -> ReportInputs:
    quicklook = Quicklook(
        np.zeros((250, 250, 3), np.uint8),
        (462405.0, 1734315.0, 469905.0, 1741815.0),
        "EPSG:32615",
        acquired="2002-04-16",
        attribution="stack from open-geo-tutorial (C. Holden), CC BY-SA 3.0",
    )
    polygons = gpd.GeoDataFrame(
        {"region_id": ["a"]}, geometry=[box(463000, 1735000, 464000, 1736000)], crs="EPSG:32615"
    )
    masked = gpd.GeoDataFrame(
        geometry=[box(466000, 1738000, 468000, 1740000)], crs="EPSG:32615"
    ).to_crs("EPSG:4326")  # another CRS: drawn on the picture's grid
    return ReportInputs(
        title="job",
        facts={},
        regions=pd.DataFrame({"region_id": ["a"], "forest_loss_ha": [100.0]}),
        polygons=polygons,
        quicklook=quicklook,
        timeseries=pd.DataFrame(
            {"region_id": ["a"], "period_end": ["2002-04-16"], "forest_loss_ha": [100.0]}
        ),
        flags=flags,
        masked=masked,
    )


def test_report_has_legend_scale_bar_date_attribution_masks_and_flags() -> None:
    season = Flag("season", "run", "the dates are 149 days apart in the year")
    page = build_report(_inputs((season, Flag("masked_after", "a", "35% of the region <x>"))))
    assert 'id="legend"' in page and "forest loss" in page and "masked or without data" in page
    match = re.search(r'id="scale-bar" data-length-m="(\d+)" data-pixels="([\d.]+)"', page)
    assert match is not None and match.group(1) == "1000"
    assert float(match.group(2)) == pytest.approx(1000 / 30, rel=1e-3)
    assert "acquired 2002-04-16" in page
    assert "open-geo-tutorial (C. Holden), CC BY-SA 3.0" in page
    assert page.count('class="masked-area"') == 1
    # the masked square (466000-468000, 1738000-1740000) lands at picture columns 119.8-186.5
    # and rows 60.5-127.2 (30 m pixels from 462405, 1741815), after its trip through lon/lat
    path = re.search(r'class="masked-area" d="M([\d.]+),([\d.]+)', page)
    assert path is not None
    assert 119.5 <= float(path.group(1)) <= 186.8 and 60.2 <= float(path.group(2)) <= 127.5
    assert '<li data-code="season"><b>run</b>: the dates are 149 days apart' in page
    assert "35% of the region &lt;x&gt;" in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert f'width="{MAP_WIDTH}"' in page


def test_report_without_flags_says_so() -> None:
    page = build_report(_inputs())
    assert "No quality flag" in page
