"""A real full or read-only file system (a small tmpfs): one clear line, nothing left behind.

Mounting a tmpfs needs root (as CI runs); elsewhere these tests skip.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely

from geoseg.errors import DiskFullError, OutputError
from geoseg.io.vector import write_layers
from tests.conftest import UTM_CRS, write_geotiff

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

STAGE_START = re.compile(r"^[\w :-]+: \d+ [\w ]+ to do$")
"""A progress display's stage-start line in a log (geoseg.report.progress), not an error."""


def _mount(folder: Path, options: str) -> None:
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB file system."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder = tmp_path / "small"
    folder.mkdir()
    _mount(folder, "size=256k")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _polygons(count: int) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 10_000, (count, 2))
    boxes = [shapely.box(x, y, x + 30, y + 30) for x, y in corners]
    return gpd.GeoDataFrame({"value": np.arange(count)}, geometry=boxes, crs=UTM_CRS)


def test_a_geopackage_that_fills_the_disk(small_disk: Path) -> None:
    target = small_disk / "polygons.gpkg"
    with pytest.raises(DiskFullError, match="no space left on device") as caught:
        write_layers(target, {"polygons": _polygons(20_000)})
    message = str(caught.value)
    assert str(small_disk) in message and "rollback" not in message
    assert list(small_disk.iterdir()) == []  # no partial file, no temporary


def test_cli_on_a_full_disk_and_on_a_read_only_folder(small_disk: Path, tmp_path: Path) -> None:
    raster = tmp_path / "classes.tif"
    rng = np.random.default_rng(0)
    labels = (rng.random((400, 400)) < 0.5).astype(np.uint8)  # many small polygons
    write_geotiff(raster, labels, nodata=255)
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}

    def vectorize(out: Path) -> tuple[int, list[str]]:
        done = subprocess.run(
            [sys.executable, "-m", "geoseg", "vectorize", str(raster), "--out", str(out)],
            capture_output=True,
            text=True,
            env=environment,
            cwd=ROOT,
            timeout=300,
        )
        return done.returncode, [
            line
            for line in done.stderr.splitlines()
            if line.strip() and not STAGE_START.match(line)
        ]

    status, lines = vectorize(small_disk / "classes.gpkg")
    assert status == DiskFullError.exit_code
    assert len(lines) == 1 and lines[0].startswith("geoseg: error:")
    assert "no space left on device" in lines[0] and str(small_disk) in lines[0]
    assert list(small_disk.iterdir()) == []
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    status, lines = vectorize(small_disk / "classes.gpkg")
    assert status == OutputError.exit_code
    assert len(lines) == 1 and "not writable" in lines[0]
