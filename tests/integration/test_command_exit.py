"""``geoseg predict`` as the user runs it: workers exit cleanly, the phases are printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
ZION = Path("zion") / "zion_landsat8_20150818_b2345.tif"
PHASES = ("start-up", "cluster-start", "cluster-wait", "work", "shutdown")


def test_predict_exits_cleanly_and_prints_its_phases(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels.tif"
    completed = subprocess.run(
        [sys.executable, "-m", "geoseg", "predict", str(shared_data / ZION), "--out", str(out)],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "GEOSEG_DATA_DIR": str(shared_data),
            "DASK_LOGGING__DISTRIBUTED": "warning",  # Dask's warnings shown, as "still alive"
        },
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert out.exists()
    for noise in ("still alive", "Traceback", "Exception", "Warning"):
        assert noise not in completed.stderr
    lines = completed.stderr.splitlines()
    # not a terminal: one line as each stage starts and ends
    assert any(re.fullmatch(r"predict: \d+ tiles to do", line) for line in lines)
    assert any(re.fullmatch(r"predict: (\d+)/\1 tiles in \d+:\d\d", line) for line in lines)
    timings = [line for line in lines if line.startswith("timings: ")]
    assert len(timings) == 1
    phases = dict(
        re.fullmatch(r"(\S+) (\d+\.\d\d) s", part).groups()  # type: ignore[union-attr]
        for part in timings[0].removeprefix("timings: ").split(", ")
    )
    assert tuple(phases) == PHASES
    seconds = {name: float(value) for name, value in phases.items()}
    # the workers closed well within the nanny's 4 s (they were killed after it before)
    assert seconds["shutdown"] < 4.0
    assert seconds["cluster-wait"] <= seconds["cluster-start"] + 0.5
