"""Report files written atomically: an HTML page, a PNG figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geoseg.io.atomic import atomic_path


def write_html(path: str | Path, html: str) -> Path:
    """Write ``html`` (UTF-8) to ``path`` atomically and return the path."""
    final = Path(path)
    with atomic_path(final) as temporary:
        temporary.write_text(html, encoding="utf-8")
    return final


def save_png(figure: Any, path: str | Path, *, dpi: int) -> Path:
    """Save a matplotlib figure as PNG atomically (no varying metadata)."""
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi, metadata={"Software": None})
    return path
