"""A plain script without a main guard runs geoseg (a local cluster of threads), cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import geoseg
from geoseg.predict.settings import InferenceSettings, PredictOutputs

settings = InferenceSettings(bands={{"blue": 1, "green": 2, "red": 3, "nir": 4}})
result = geoseg.predict_file(
    {scene!r}, "forest-landsat", settings, PredictOutputs({out!r}), progress=False
)
print("valid", result.valid_pixels)
"""


@pytest.mark.parametrize("guarded", [False, True])
def test_script_runs_with_or_without_a_main_guard(
    shared_data: Path, tmp_path: Path, guarded: bool
) -> None:
    scene = shared_data / "chiapas_twodate" / "LE70220491999322EDC01_stack.gtif"
    body = SCRIPT.format(scene=str(scene), out=str(tmp_path / "labels.tif"))
    if guarded:
        body = 'if __name__ == "__main__":\n' + textwrap.indent(body, "    ")
    script = tmp_path / "analysis.py"
    script.write_text(body)
    completed = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "GEOSEG_DATA_DIR": str(shared_data)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "valid 62500"
    assert (tmp_path / "labels.tif").exists()
    for noise in ("Traceback", "Nanny failed", "still alive", "Warning"):
        assert noise not in completed.stderr
