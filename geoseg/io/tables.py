"""Writing statistics tables: CSV or Parquet, chosen by the file extension, atomically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from geoseg.errors import OutputError
from geoseg.io.atomic import atomic_path

TABLE_SUFFIXES = (".csv", ".parquet")


def check_table_path(path: str | Path) -> Path:
    """``path`` when its extension is a supported table format.

    Raises
    ------
    OutputError
        For any other extension.
    """
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise OutputError(
            f"{path}: unknown table format {path.suffix!r}; use one of {list(TABLE_SUFFIXES)}"
        )
    return path


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` (without its index) to ``path`` as CSV or Parquet, atomically."""
    path = check_table_path(path)
    with atomic_path(path) as temporary:
        if path.suffix.lower() == ".csv":
            frame.to_csv(temporary, index=False)
        else:
            frame.to_parquet(temporary, index=False)
    return path
