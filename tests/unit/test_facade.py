"""The public facade: ``import geoseg`` is cheap and every public name resolves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import geoseg

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY_MODULES = ("torch", "dask.distributed", "distributed", "rasterio")


def test_import_geoseg_loads_no_heavy_library() -> None:
    probe = (
        "import json, sys; import geoseg; "
        f"print(json.dumps([name for name in {list(HEAVY_MODULES)!r} if name in sys.modules]))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(completed.stdout) == []


@pytest.mark.parametrize("name", geoseg.__all__)
def test_every_public_name_resolves_and_is_documented(name: str) -> None:
    value = getattr(geoseg, name)
    assert (value.__doc__ or "").strip(), f"geoseg.{name} has no docstring"


def test_dir_lists_the_public_names() -> None:
    assert sorted(geoseg.__all__) == dir(geoseg)
    assert len(set(geoseg.__all__)) == len(geoseg.__all__)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = geoseg.no_such_name
