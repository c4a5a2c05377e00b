"""The embedded data catalog: a static STAC catalog of the sample scenes and regions."""

from pathlib import Path

CATALOG_DIR = Path(__file__).resolve().parent
"""Folder holding ``catalog.json`` and its collections and items."""
