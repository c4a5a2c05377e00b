"""Writing an HTML report atomically."""

from __future__ import annotations

from pathlib import Path

from geoseg.io.atomic import atomic_path


def write_html(path: str | Path, html: str) -> Path:
    """Write ``html`` (UTF-8) to ``path`` atomically and return the path."""
    final = Path(path)
    with atomic_path(final) as temporary:
        temporary.write_text(html, encoding="utf-8")
    return final
