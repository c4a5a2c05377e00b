"""Each bad input of issue 21 (items 1-3, 9-11) through the command line.

Every case asserts the exit status, the one ``geoseg: error:`` line naming the
file and the fix, and that nothing was written (no output, no work folder).
The library side of the same refusals is ``tests/unit/test_refusals.py``.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from affine import Affine

from geoseg.cli import main
from geoseg.errors import BAD_INPUT_EXIT
from tests.conftest import ORIGIN, write_geotiff
from tests.predict_fixtures import make_model_dir
from tests.unit.test_refusals import disguised_vrt, sparse_geotiff

REPO = Path(__file__).resolve().parents[2]
DESCRIPTIONS = ["B2_blue", "B3_green", "B4_red", "B5_nir"]
ZION_BBOX = "-113.10,37.15,-112.95,37.30"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny")


def _fails(arguments: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command line; return its one error line after checking the exit status."""
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == BAD_INPUT_EXIT
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("geoseg: error: ")
    return lines[0]


def _predict_fails(
    source: Path, out_dir: Path, capsys: pytest.CaptureFixture[str], *options: str
) -> str:
    out_dir.mkdir(exist_ok=True)
    before = sorted(out_dir.iterdir())
    line = _fails(["predict", str(source), "--out", str(out_dir / "labels.tif"), *options], capsys)
    assert sorted(out_dir.iterdir()) == before  # no output, no .geoseg-work-* folder
    return line


@pytest.mark.slow
def test_a_header_bomb_is_refused_at_once_with_little_memory(tmp_path: Path) -> None:
    bomb = sparse_geotiff(tmp_path / "bomb.tif", 10**6, 10**6, block=8192)
    assert bomb.stat().st_size < 2**20  # declares 10^12 px x 4 bands in under a megabyte
    out = tmp_path / "out"
    out.mkdir()
    started = time.perf_counter()
    # a wrapper process reports the peak memory of its one child, the geoseg command
    # (this test process's own RUSAGE_CHILDREN would include earlier tests' children)
    wrapper = (
        "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
        "sys.exit(done.returncode)"
    )
    command = [sys.executable, "-m", "geoseg", "predict", str(bomb), "--out", str(out / "l.tif")]
    done = subprocess.run(
        [sys.executable, "-c", wrapper, *command],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=False,
    )
    seconds = time.perf_counter() - started
    *lines, peak_kb = done.stderr.strip().splitlines()
    peak_mb = int(peak_kb) / 1024
    assert done.returncode == BAD_INPUT_EXIT
    assert "\n".join(lines) == (
        f"geoseg: error: {bomb}: declares 1000000 x 1000000 px x 4 bands (1e+12 px), beyond "
        "the budget of 2.5e+09 px; check the file (a sparse or damaged header?), cut it into "
        "parts, or raise --max-pixels"
    )
    assert list(out.iterdir()) == []
    assert seconds < 60  # the import of the command line, then one header read
    assert peak_mb < 1024, peak_mb  # today's code held 3.5 GB after 4 minutes


def test_max_pixels_is_an_option(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = np.ones((4, 80, 80), dtype=np.uint16)
    scene = write_geotiff(tmp_path / "scene.tif", data, descriptions=DESCRIPTIONS)
    line = _predict_fails(
        scene, tmp_path / "out", capsys, "--model", str(model_dir), "--max-pixels", "6399"
    )
    assert f"{scene}: declares 80 x 80 px x 4 bands" in line


def test_a_300_m_scene_for_a_30_m_model_is_refused(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = np.random.default_rng(3).integers(0, 5000, (4, 80, 80)).astype(np.uint16)
    transform = Affine(300.0, 0.0, ORIGIN[0], 0.0, -300.0, ORIGIN[1])
    scene = write_geotiff(
        tmp_path / "coarse.tif", data, transform=transform, descriptions=DESCRIPTIONS
    )
    line = _predict_fails(scene, tmp_path / "out", capsys, "--model", str(model_dir))
    assert f"{scene}: pixels of 300" in line
    assert "the model expects 30 m (10.00x" in line
    assert "gdalwarp -tr 30 30" in line and "--allow-pixel-size-mismatch" in line


def test_a_raster_without_geotransform_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    path = tmp_path / "nogt.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=80,
            height=80,
            count=4,
            dtype="uint16",
            crs="EPSG:32612",
        ) as dataset:
            dataset.write(np.ones((4, 80, 80), dtype=np.uint16))
    line = _predict_fails(path, tmp_path / "out", capsys)
    assert f"{path}: the raster has a CRS but no geotransform" in line
    assert "gdal_edit.py -a_ullr" in line


def test_a_disguised_vrt_is_refused(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vrt = disguised_vrt(tmp_path / "scene.tif", Path("/etc/passwd"))
    line = _predict_fails(vrt, tmp_path / "out", capsys, "--model", str(model_dir))
    assert f"{vrt}: the file is a GDAL VRT, not a GeoTIFF" in line
    assert "--allow-vrt" in line


class _Counting(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Counting.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.25]]]')

    def log_message(self, format: str, *args: object) -> None:
        """Silent."""


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Counting.hits.clear()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("command", ["run", "catalog"])
def test_a_url_crs_is_refused_and_never_fetched(
    tmp_path: Path, server: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"{server}/crs.wkt"
    if command == "run":
        arguments = ["run", "--bbox", ZION_BBOX, "--bbox-crs", url, "--datetime", "2015"]
        arguments += ["--out", str(tmp_path / "out.gpkg")]
    else:
        arguments = ["catalog", "search", "--bbox", ZION_BBOX, "--bbox-crs", url]
    line = _fails(arguments, capsys)
    assert f"CRS '{url}': a URL or file path; geoseg does not fetch or read" in line
    assert _Counting.hits == []
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def zion_catalog(tmp_path: Path) -> Path:
    """A copy of the embedded catalog; tests point the Zion scene's href elsewhere."""
    copy = tmp_path / "catalog"
    shutil.copytree(REPO / "data_catalog", copy, ignore=shutil.ignore_patterns("*.py", "__*"))
    return copy


@pytest.mark.slow
@pytest.mark.parametrize(
    ("href", "message"),
    [
        ("../zion/zion_landsat8_20150818_b2345.tif", "the catalog href leads outside the data"),
        ("zion/../../../../etc/hostname", "the catalog href leads outside the data"),
        ("/etc/hostname", "the catalog href leads outside the data"),
        ("/vsicurl/http://127.0.0.1:9/zion.tif", "a remote href in a static catalog"),
        ("http://127.0.0.1:9/zion.tif", "a remote href in a static catalog"),
    ],
)
def test_catalog_hrefs_are_confined_to_the_data_directory(
    tmp_path: Path,
    zion_catalog: Path,
    href: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    item = zion_catalog / "landsat" / "zion-landsat8-20150818" / "zion-landsat8-20150818.json"
    text = item.read_text()
    assert '"zion/zion_landsat8_20150818_b2345.tif"' in text
    item.write_text(text.replace('"zion/zion_landsat8_20150818_b2345.tif"', f'"{href}"'))
    out = tmp_path / "out"
    out.mkdir()
    line = _fails(
        [
            "run",
            "--bbox",
            ZION_BBOX,
            "--datetime",
            "2015-08-18",
            "--catalog",
            str(zion_catalog),
            "--out",
            str(out / "zion.gpkg"),
        ],
        capsys,
    )
    # pystac normalises zion/../../x to ../x
    assert line.startswith("geoseg: error: catalog item zion-landsat8-20150818: ")
    assert f"{Path(href).name}: {message}" in line
    if "outside" in message:
        assert "--allow-external-hrefs" in line
    assert list(out.iterdir()) == []
