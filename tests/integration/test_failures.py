"""Failures end as one ``geoseg: error:`` line, the right exit status, and nothing left behind.

Each case builds its bad input or fault: a broken safetensors header (with a
matching checksum), a corrupt block outside the statistics sample, a full
disk (a simulated ``ENOSPC``), a damaged jobs database, two runs on one work
folder, Ctrl-C. Runs that go through Dask use worker processes, where task
errors are pickled back to the client.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from distributed import Client

import geoseg.io.workdir
from geoseg.cli import error_line, main
from geoseg.errors import DiskFullError
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from tests.clusters import started_client
from tests.conftest import UTM_CRS, write_geotiff
from tests.predict_fixtures import make_model_dir
from workflows.predict import predict_file

DESCRIPTIONS = ["B2_blue", "B3_green", "B4_red", "B5_nir"]
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

STAGE_START = re.compile(r"^[\w :-]+: \d+ [\w ]+ to do$")
"""A progress display's stage-start line in a log (geoseg.report.progress), not an error."""


def _scene(path: Path, size: int) -> Path:
    data = np.random.default_rng(1).integers(0, 5000, (4, size, size)).astype(np.uint16)
    return write_geotiff(path, data, nodata=65535, descriptions=DESCRIPTIONS)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _scene(tmp_path_factory.mktemp("scene") / "scene.tif", 600)


def _geoseg(*arguments: str, **options: Any) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    environment.pop("GEOSEG_TRACEBACK", None)
    return subprocess.Popen(
        [sys.executable, "-m", "geoseg", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        cwd=ROOT,
        **options,
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, list[str]]:
    """Exit status and the non-empty stderr lines of a finished process."""
    _, stderr = process.communicate(timeout=300)
    return process.returncode, [
        line for line in stderr.splitlines() if line.strip() and not STAGE_START.match(line)
    ]


def _leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_broken_safetensors_header_is_one_line_and_leaves_nothing(
    tmp_path: Path, model_dir: Path, scene: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    raw = bytearray((model_dir / "weights.safetensors").read_bytes())
    raw[8:20] = b'{"broken":  '  # invalid JSON in the header; the card's checksum matches
    (broken / "weights.safetensors").write_bytes(bytes(raw))
    card = json.loads((model_dir / "card.json").read_text())
    card["weights_sha256"] = hashlib.sha256(bytes(raw)).hexdigest()
    (broken / "card.json").write_text(json.dumps(card))
    out = tmp_path / "out"
    out.mkdir()
    status, lines = _finish(
        _geoseg("predict", str(scene), "--model", str(broken), "--out", str(out / "l.tif"))
    )
    assert status == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("geoseg: error: ")
    assert f"{broken / 'weights.safetensors'}: not a valid safetensors file" in lines[0]
    assert _leftovers(out) == []  # no output, no .geoseg-work-* folder


def _corrupt_scene(path: Path) -> Path:
    """1500 px square, 64 px deflate blocks; block (2, 2) is garbage.

    The statistics sample (128 px windows from 0 every 196 px) misses rows and
    columns 128-196, so the run starts and a forward task meets the block.
    """
    data = np.random.default_rng(1).integers(0, 5000, (4, 1500, 1500)).astype(np.uint16)
    profile = {
        "driver": "GTiff",
        "height": 1500,
        "width": 1500,
        "count": 4,
        "dtype": "uint16",
        "crs": UTM_CRS,
        "transform": Affine(30, 0, 300000, 0, -30, 4150000),
        "nodata": 65535,
        "tiled": True,
        "blockxsize": 64,
        "blockysize": 64,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(data)
        dataset.descriptions = tuple(DESCRIPTIONS)
    with rasterio.open(path) as dataset:
        offset = int(dataset.get_tag_item("BLOCK_OFFSET_2_2", "TIFF", bidx=1))
        size = int(dataset.get_tag_item("BLOCK_SIZE_2_2", "TIFF", bidx=1))
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff" * size)
    return path


def test_corrupt_block_outside_the_sample_names_the_window(tmp_path: Path, model_dir: Path) -> None:
    source = _corrupt_scene(tmp_path / "corrupt.tif")
    out = tmp_path / "out"
    out.mkdir()
    status, lines = _finish(
        _geoseg("predict", str(source), "--model", str(model_dir), "--out", str(out / "l.tif"))
    )
    assert status == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"geoseg: error: {source}: reading rows ")
    assert "truncated or corrupt" in lines[0]
    assert "IReadBlock failed" in lines[0]  # GDAL's reason, not "see previous exception"
    assert _leftovers(out) == []


@pytest.fixture(scope="module")
def threads_client() -> Iterator[Client]:
    """Workers in this process, so that a monkeypatched write reaches them."""
    with started_client(1) as client:
        yield client


def _full_disk_after(monkeypatch: pytest.MonkeyPatch, writes: int) -> None:
    """Batch files fail with ENOSPC after ``writes`` of them were written."""
    real_open = open
    count = {"writes": 0}

    def open_until_full(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "b" in mode and str(path).endswith(".partial"):
            count["writes"] += 1
            if count["writes"] > writes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(geoseg.io.workdir, "open", open_until_full, raising=False)


@pytest.mark.parametrize("writes", [0, 12])
def test_full_disk_says_so_and_removes_or_sizes_the_work_folder(
    tmp_path: Path,
    model_dir: Path,
    scene: Path,
    threads_client: Client,
    monkeypatch: pytest.MonkeyPatch,
    writes: int,
) -> None:
    _full_disk_after(monkeypatch, writes)
    out = tmp_path / "labels.tif"
    settings = InferenceSettings(chunk_size=128, batch_size=2)
    with pytest.raises(DiskFullError) as failure:
        predict_file(
            scene, model_dir, settings, PredictOutputs(out), client=threads_client, progress=False
        )
    line = error_line(failure.value)
    assert "no space left on device in " in line
    assert "cannot rollback" not in line
    assert failure.value.exit_code == 1
    work = list(tmp_path.glob(".geoseg-work-*"))
    assert not out.exists()
    if writes == 0:  # nothing finished: nothing kept
        assert work == []
        assert "is kept" not in line
    else:
        assert len(work) == 1
        assert f"the work folder {work[0]} (" in line
        assert " MiB, " in line
        assert "is kept: run the same command again to resume" in line


def test_damaged_jobs_database_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database = tmp_path / "jobs.sqlite"
    database.write_bytes(np.random.default_rng(3).bytes(8192))
    before = database.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(["jobs", "--db", str(database), "list"])
    assert exit_info.value.code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [
        f"geoseg: error: {database}: the jobs database is damaged or not a SQLite database "
        "(file is not a database); restore it from a backup, or move it away to start an "
        "empty one"
    ]
    assert database.read_bytes() == before


def _wait_for(condition: Any, process: subprocess.Popen[str]) -> None:
    """Wait until ``condition()`` holds (the other process writes what it checks)."""
    deadline = time.monotonic() + 240
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.05)


def _locked(work_root: Path) -> bool:
    """Whether a work folder under ``work_root`` has its lock held by another process."""
    for lock in work_root.glob(".geoseg-work-*/.lock"):
        with lock.open("rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def test_second_run_on_a_held_work_folder_refuses_and_other_outputs_run(
    tmp_path: Path, model_dir: Path, scene: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    arguments = ("predict", str(scene), "--model", str(model_dir), "--chunk-size", "128")
    first = _geoseg(*arguments, "--out", str(out / "a.tif"), start_new_session=True)
    try:
        _wait_for(lambda: _locked(out), first)
        os.killpg(first.pid, signal.SIGSTOP)  # the first run holds its lock, frozen
        [work] = list(out.glob(".geoseg-work-*"))
        files_before = _leftovers(work)
        same = _geoseg(*arguments, "--out", str(out / "a.tif"))
        status, lines = _finish(same)
        assert status == 1
        assert lines == [
            f"geoseg: error: {work}: another geoseg run (process {first.pid}) is using this "
            "work folder; wait for it to end, or write to another output"
        ]
        assert _leftovers(work) == files_before  # nothing read, recycled or removed
        other_status, other_lines = _finish(_geoseg(*arguments, "--out", str(out / "b.tif")))
        assert other_status == 0, other_lines
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    status, lines = _finish(first)
    assert status == 0, lines
    assert (out / "a.tif").read_bytes() == (out / "b.tif").read_bytes()
    assert _leftovers(out) == ["a.tif", "a.tif.stac.json", "b.tif", "b.tif.stac.json"]


def test_ctrl_c_prints_one_line_and_keeps_the_work_folder(tmp_path: Path, model_dir: Path) -> None:
    source = _scene(tmp_path / "scene.tif", 1200)
    out = tmp_path / "out"
    out.mkdir()
    arguments = ("predict", str(source), "--model", str(model_dir), "--chunk-size", "128")
    # started as a terminal's foreground job is: with Ctrl-C handled, even where these tests
    # run in a background job (whose commands inherit SIGINT ignored, as geoseg then keeps it)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        run = _geoseg(*arguments, "--out", str(out / "l.tif"), start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    _wait_for(lambda: any(out.glob(".geoseg-work-*/summary_*.json")), run)
    os.killpg(run.pid, signal.SIGINT)  # as the terminal does: every process of the group
    status, lines = _finish(run)
    assert status == 130
    [work] = list(out.glob(".geoseg-work-*"))
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"geoseg: interrupted; the work folder {work} (")
    assert lines[0].endswith(
        "is kept: run the same command again to resume, or delete it to start over"
    )
    assert not (out / "l.tif").exists()
    assert not (out / "l.tif.stac.json").exists()  # an interrupted run writes no STAC Item
