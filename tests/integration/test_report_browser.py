"""The job report renders in a real headless Chromium: map, table and chart, offline."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from shapely.geometry import box

from geoseg.io.report import write_html
from geoseg.report.html import Quicklook, ReportInputs, build_report

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.fixture
def report_file(tmp_path: Path, rng: np.random.Generator) -> Path:
    rows, cols = 250, 250
    yy, xx = np.mgrid[0:rows, 0:cols]
    # a muted green gradient with no magenta in it, so the polygons can be found by colour
    rgb = np.stack(
        [30 + xx * 80 // cols, 80 + yy * 120 // rows, 40 + (xx + yy) * 40 // 500], axis=-1
    )
    rgb = rgb.astype(np.uint8)
    quicklook = Quicklook(
        rgb=rgb, bounds=(462405.0, 1734315.0, 469905.0, 1741815.0), crs="EPSG:32615"
    )
    polygons = gpd.GeoDataFrame(
        {"region_id": ["west", "east"]},
        geometry=[
            box(463000, 1739000, 465000, 1741000),
            box(467000, 1735000, 469000, 1736500),
        ],
        crs="EPSG:32615",
    )
    regions = pd.DataFrame(
        {"region_id": ["east", "west"], "forest_loss_ha": [300.0, 400.0], "pixels": [3333, 4444]}
    )
    periods = ["2002-04-16", "2003-01-15", "2003-02-15"]
    timeseries = pd.DataFrame(
        {
            "region_id": ["east", "west"] * 3,
            "period_end": [period for period in periods for _ in range(2)],
            "forest_loss_ha": rng.uniform(10, 500, 6),
        }
    )
    html = build_report(
        ReportInputs(
            title="geoseg job chiapas: forest loss",
            facts={"before scene": "A", "after scene": "B"},
            regions=regions,
            polygons=polygons,
            quicklook=quicklook,
            timeseries=timeseries,
        )
    )
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html and "<script" not in html and "<link" not in html
    return write_html(tmp_path / "report.html", html)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path: Path, report_file: Path) -> None:
    url = report_file.as_uri()
    dom = run_chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout
    assert re.search(r'<svg id="map"[^>]*>', rendered)
    assert 'id="map-quicklook"' in rendered
    assert rendered.count('class="loss-polygon"') == 2
    assert re.search(r'<table id="regions-table">', rendered)
    assert rendered.count("<tr>") == 3  # header + 2 regions
    assert rendered.index("west") < rendered.index("east")  # most loss first
    assert re.search(r'<svg id="loss-chart"[^>]*>', rendered)
    assert rendered.count('class="series"') == 2

    screenshot = tmp_path / "report.png"
    shot = run_chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1200,1600", url)
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    pixels = np.asarray(Image.open(screenshot).convert("RGB"))
    assert pixels.shape[:2] == (1600, 1200)
    assert pixels.std() > 20
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 1000  # the quicklook gradient, not a blank page
    signed = pixels.astype(np.int32)
    # the quicklook was painted: green-dominant pixels cover a large area
    greenish = (signed[..., 1] - signed[..., 0] > 30) & (signed[..., 1] - signed[..., 2] > 30)
    assert greenish.sum() > 100_000
    # the polygons were painted over it in translucent magenta (about 2 x 200 x 150 px)
    red, green, blue = signed[..., 0], signed[..., 1], signed[..., 2]
    magenta = (red - green > 50) & (blue - green > 50)
    assert magenta.sum() > 20_000
    # the chart's two series were drawn (blue #1f77b4 and orange #ff7f0e)
    orange = (red > 230) & (np.abs(green - 127) < 25) & (blue < 60)
    assert orange.sum() > 100
