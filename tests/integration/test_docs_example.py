"""docs/example_forest_loss.py runs as a plain script and prints a forest-loss table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_forest_loss_example_runs_from_stac_items_to_a_table(shared_data: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "docs" / "example_forest_loss.py")],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "GEOSEG_DATA_DIR": str(shared_data)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    mexico = next(line.split() for line in lines if " MEX " in f" {line} ")
    region_ha, loss_ha, gain_ha, net_ha = (float(value) for value in mexico[2:6])
    # the scene is 250 x 250 px of 30 m, all inside Mexico: 5625 ha on the map plane,
    # a little more on the ground at 15.7 N in UTM zone 15 (scale factor < 1 there)
    assert 5600 < region_ha < 5660
    assert 0 < loss_ha < region_ha and 0 < gain_ha < region_ha
    assert net_ha == pytest.approx(gain_ha - loss_ha, abs=1e-5)  # printed with 6 decimals
    forest = next(float(line.split()[1]) for line in lines if line.startswith("forest"))
    other = next(float(line.split()[1]) for line in lines if line.startswith("non-forest"))
    # vectorized polygon areas of AFTER sum to the region's area (an independent path)
    assert forest + other == pytest.approx(region_ha, rel=1e-6)
    assert "Traceback" not in completed.stderr
