"""The narrow interfaces a job runs through: where scenes come from and what runs change.

The job logic (:mod:`geoseg.jobs.runner`) never imports the catalog or the
change workflow directly; it receives a :class:`JobBackend` holding a
:class:`SceneSource` and a :class:`ChangeRunner`. ``workflows.jobs`` builds the
real backend (the STAC catalog and ``run-change``); tests pass deterministic
fakes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import geopandas as gpd
import pandas as pd

from geoseg.change.flags import Flag
from geoseg.jobs.spec import AreaSpec, CatalogQuery
from geoseg.report.html import Quicklook

REGION_COLUMNS = ("region_id", "forest_loss_ha")
"""Columns every per-region change table must hold (others are kept as they are)."""


@dataclass(frozen=True, slots=True)
class SceneRef:
    """One scene of the catalog: its id and acquisition time (UTC), plus where it lives.

    ``catalog`` is the catalog it was found in (empty: the embedded one) and
    ``href`` its data file as the catalog records it.
    """

    id: str
    datetime: datetime
    collection: str = ""
    href: str = ""
    catalog: str = ""


@dataclass(frozen=True)
class ChangeOutputs:
    """What one change run produced.

    Attributes
    ----------
    files
        The files the runner wrote inside its output folder.
    regions
        One row per region: ``region_id``, ``forest_loss_ha`` and any other statistics.
    polygons
        Deforestation polygons with a ``region_id`` column, in their own CRS.
    quicklook
        A picture of the AFTER scene for the report's map, when the runner made one.
    after_classes
        The AFTER scene's class map (one of ``files``: uint8, nodata 255, the
        ``GEOSEG_CLASS_NAMES`` tag): later runs' class maps confirm this run's
        losses, and this one confirms earlier runs' (None: nothing to confirm with).
    flags
        Quality flags of the comparison (:mod:`geoseg.change.flags`), run-level first.
    masked
        Areas without a valid class at either date (clouds, shadows, nodata).
    """

    files: tuple[Path, ...]
    regions: pd.DataFrame
    polygons: gpd.GeoDataFrame
    quicklook: Quicklook | None = field(default=None)
    after_classes: Path | None = None
    flags: tuple[Flag, ...] = ()
    masked: gpd.GeoDataFrame | None = field(default=None)


class SceneSource(Protocol):
    """Lists the catalog's scenes over a job's area that match its query."""

    def scenes(self, area: AreaSpec, query: CatalogQuery) -> list[SceneRef]:
        """All matching scenes, in any order."""
        ...


class ChangeRunner(Protocol):
    """Runs change detection between two scenes over an area with a model."""

    def model_hash(self, model: str) -> str:
        """The SHA-256 that identifies the model's weights."""
        ...

    def run(
        self,
        before: SceneRef,
        after: SceneRef,
        area: AreaSpec,
        model: str,
        out_dir: Path,
        work_dir: Path,
    ) -> ChangeOutputs:
        """Run change from ``before`` to ``after``; the outputs go inside ``out_dir``.

        ``out_dir`` exists and is empty. ``work_dir`` exists and is kept across
        attempts of the same run (a resumable runner stages its work there);
        it is removed once the run is published. The same arguments must give
        the same files and tables (retries rely on it).
        """
        ...


@dataclass(frozen=True)
class JobBackend:
    """The scene source and change runner a job uses."""

    scenes: SceneSource
    runner: ChangeRunner
