"""Locating the sample-data directory (``GEOSEG_DATA_DIR`` or ``../shared/data``)."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from geoseg.errors import ChecksumError, DataDirError
from geoseg.io.checksums import read_sha256sums, verify_sha256

ENV_VAR = "GEOSEG_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """Return the data directory.

    ``$GEOSEG_DATA_DIR`` when set, else ``../shared/data`` beside the repository.

    Raises
    ------
    DataDirError
        When neither exists; the message says how to set it.
    """
    configured = os.environ.get(ENV_VAR)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_dir():
            raise DataDirError(f"{ENV_VAR}={configured} is not a directory; point it at the data")
        return path
    default = REPO_ROOT.parent / "shared" / "data"
    if default.is_dir():
        return default
    raise DataDirError(
        f"no data directory: set {ENV_VAR} to the folder holding the sample data "
        f"(looked for {default})"
    )


@cache
def _verified(path: Path, mtime_ns: int, size: int) -> None:
    sums_file = data_dir() / "SHA256SUMS"
    if not sums_file.exists():
        return
    relative = path.resolve().relative_to(data_dir().resolve()).as_posix()
    expected = read_sha256sums(sums_file).get(relative)
    if expected is None:
        raise ChecksumError(f"{path}: not listed in {sums_file}; add its SHA-256 there")
    verify_sha256(path, expected)


def data_file(relative: str, *, verify: bool = True) -> Path:
    """Return a file of the data directory, checking its SHA-256 against ``SHA256SUMS``.

    Parameters
    ----------
    relative
        Path relative to the data directory, e.g. ``"zion/zion.gpkg"``.
    verify
        Verify the checksum (once per file version and process).
    """
    path = data_dir() / relative
    if not path.exists():
        raise DataDirError(f"{path}: missing from the data directory {data_dir()}")
    if verify:
        stat = path.stat()
        _verified(path, stat.st_mtime_ns, stat.st_size)
    return path
