"""Staging and publishing outputs: nothing half-written ever appears at a final path.

One path serves ``geoseg run`` / ``run-change`` and scheduled jobs. Work kept
across attempts lives in a work folder (:func:`work_folder`) beside the
outputs, with its state as JSON (:func:`write_json`, :func:`read_json`). A
complete staged file is copied to its final path atomically
(:func:`publish_file`); a complete staged folder is renamed to its final path
in one step (:func:`publish_folder`). A killed attempt leaves only staging
files and work folders behind, which the next attempt reuses or removes
(:func:`remove_file`, :func:`remove_tree`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geoseg.errors import OutputError
from geoseg.io.atomic import atomic_path

_STAGING_MARK = ".partial-"


def check_output_paths(paths: Sequence[Path]) -> None:
    """Check that the final ``paths`` all differ and that their folders exist.

    Raises
    ------
    OutputError
        Two paths are the same file, or a folder is missing.
    """
    if len({path.resolve() for path in paths}) != len(paths):
        raise OutputError(f"{paths[0]}: the output paths must all differ")
    for path in paths:
        if not path.parent.is_dir():
            raise OutputError(f"{path}: the output directory {path.parent} does not exist")


def work_folder(path: Path) -> Path:
    """The folder ``path``, kept across attempts of a run (created with its parents if needed)."""
    path.mkdir(parents=True, exist_ok=True)
    return path


def staging_folder(final: Path, attempt: int) -> Path:
    """Create an empty staging folder for ``final``, removing leftovers of earlier attempts.

    Only one process runs a job at a time (the state store sees to it), so
    leftovers belong to dead attempts.
    """
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{parent}: cannot create the runs folder ({error})") from None
    for leftover in parent.glob(f".{final.name}{_STAGING_MARK}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    staging = parent / f".{final.name}{_STAGING_MARK}{attempt}"
    staging.mkdir()
    return staging


def read_json(path: str | Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when the file does not exist or is unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON with sorted keys, atomically."""
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def publish_file(staged: str | Path, final: str | Path) -> Path:
    """Copy a complete staged file to ``final`` atomically (it replaces any file there)."""
    staged, final = Path(staged), Path(final)
    if not staged.exists():
        raise OutputError(f"{staged}: nothing was staged for {final}")
    with atomic_path(final) as temporary:
        shutil.copyfile(staged, temporary)
    return final


def publish_folder(staging: Path, final: Path) -> None:
    """Flush every file of ``staging`` to disk and rename it to ``final`` in one step.

    Raises
    ------
    OutputError
        ``final`` exists already: a published folder is never replaced.
    """
    if final.exists():
        raise OutputError(f"{final}: a run folder already exists; earlier runs are never replaced")
    for path in sorted(staging.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    os.rename(staging, final)
    directory = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def remove_file(path: str | Path) -> None:
    """Delete ``path`` if it exists (a stale staging file of a killed attempt)."""
    with contextlib.suppress(FileNotFoundError):
        Path(path).unlink()


def remove_tree(path: str | Path) -> None:
    """Delete a work or staging folder and everything in it (nothing when it is absent)."""
    shutil.rmtree(path, ignore_errors=True)
