"""Pure table logic of incremental jobs: which scene pair to process, and the cumulative tables.

Each change run covers a period from its BEFORE scene to its AFTER scene. Its
polygons and per-region table are tagged with that period; the cumulative
tables are the tagged tables of every run, in order of their AFTER scene.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import geopandas as gpd
import pandas as pd

from geoseg.change.flags import Flag
from geoseg.errors import JobError
from geoseg.jobs.interfaces import REGION_COLUMNS, SceneRef
from geoseg.jobs.spec import as_utc

PERIOD_COLUMNS = ("period_start", "period_end", "before_scene", "after_scene")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class ScenePair:
    """What a run does: ``after`` is None when there is no new data.

    ``before`` is None with an ``after`` scene for the very first scene of a
    job (the baseline, nothing to compare yet).
    """

    before: SceneRef | None
    after: SceneRef | None

    @property
    def status(self) -> str:
        """``"no_new_data"``, ``"baseline"`` or ``"change"``."""
        if self.after is None:
            return "no_new_data"
        return "baseline" if self.before is None else "change"


def choose_pair(
    scenes: Sequence[SceneRef], last_id: str | None, last_time: datetime | None, until: datetime
) -> ScenePair:
    """Pick the scenes a run compares.

    Parameters
    ----------
    scenes
        The catalog's matching scenes, any order.
    last_id, last_time
        The newest scene already processed by the job (None for a new job).
    until
        Only scenes acquired at or before this time count (the period's end).

    Returns
    -------
    ScenePair
        For a new job: the oldest and newest scenes (or the only one as a
        baseline); afterwards: the last processed scene and the newest one
        after it; no AFTER scene when nothing is newer.
    """
    ordered = sorted(
        (scene for scene in scenes if as_utc(scene.datetime) <= as_utc(until)),
        key=lambda scene: (as_utc(scene.datetime), scene.id),
    )
    if last_id is None or last_time is None:
        if not ordered:
            return ScenePair(before=None, after=None)
        if len(ordered) == 1:
            return ScenePair(before=None, after=ordered[0])
        return ScenePair(before=ordered[0], after=ordered[-1])
    newer = [scene for scene in ordered if as_utc(scene.datetime) > as_utc(last_time)]
    if not newer:
        return ScenePair(before=None, after=None)
    before = next((scene for scene in scenes if scene.id == last_id), None)
    if before is None:
        raise JobError(
            f"the last processed scene {last_id!r} ({last_time:%Y-%m-%d}) is no longer in the "
            "catalog; restore it or add the job again under a new name to start afresh"
        )
    return ScenePair(before=before, after=newer[-1])


def run_folder_name(before: SceneRef, after: SceneRef, model_hash: str, spec_hash: str) -> str:
    """A run folder's name: both dates and a short hash of scene ids, model and spec."""
    key = "\n".join((before.id, after.id, model_hash, spec_hash)).encode("utf-8")
    digest = hashlib.sha256(key).hexdigest()[:10]
    return f"{as_utc(before.datetime):%Y%m%d}_to_{as_utc(after.datetime):%Y%m%d}_{digest}"


def safe_name(text: str) -> str:
    """``text`` with every run of characters unsafe in file names replaced by ``_``."""
    return _UNSAFE.sub("_", text).strip("_") or "unnamed"


def _period_values(before: SceneRef, after: SceneRef) -> dict[str, str]:
    return {
        "period_start": f"{as_utc(before.datetime):%Y-%m-%d}",
        "period_end": f"{as_utc(after.datetime):%Y-%m-%d}",
        "before_scene": before.id,
        "after_scene": after.id,
    }


def check_regions(regions: pd.DataFrame, source: str) -> pd.DataFrame:
    """Validate a runner's per-region table and order it by region id."""
    missing = [name for name in REGION_COLUMNS if name not in regions.columns]
    if missing:
        raise JobError(
            f"{source}: the per-region change table lacks column(s) {missing}; "
            f"it has {list(regions.columns)}"
        )
    ordered = regions.assign(region_id=regions["region_id"].astype(str))
    return ordered.sort_values("region_id", kind="stable").reset_index(drop=True)


def tag_polygons(polygons: gpd.GeoDataFrame, before: SceneRef, after: SceneRef) -> gpd.GeoDataFrame:
    """Deforestation polygons with their period columns added (``region_id`` kept)."""
    if "region_id" not in polygons.columns:
        raise JobError(
            f"the change runner's polygons lack a 'region_id' column; they have "
            f"{list(polygons.columns)}"
        )
    values = _period_values(before, after)
    tagged = polygons[["region_id", polygons.geometry.name]].copy()
    tagged["region_id"] = tagged["region_id"].astype(str)
    for name, value in values.items():
        tagged[name] = value
    columns = ["region_id", *PERIOD_COLUMNS, polygons.geometry.name]
    return gpd.GeoDataFrame(tagged[columns], geometry=polygons.geometry.name, crs=polygons.crs)


def tag_regions(regions: pd.DataFrame, before: SceneRef, after: SceneRef) -> pd.DataFrame:
    """A per-region table with its period columns inserted after ``region_id``."""
    table = regions.copy()
    for name, value in _period_values(before, after).items():
        table[name] = value
    others = [name for name in regions.columns if name != "region_id"]
    return table[["region_id", *PERIOD_COLUMNS, *others]]


def tag_flags(flags: Sequence[Flag], before: SceneRef, after: SceneRef) -> pd.DataFrame:
    """A run's flags as a table: ``code``, ``where``, ``message`` and the period columns."""
    table = pd.DataFrame(
        {
            "code": pd.Series([flag.code for flag in flags], dtype=str),
            "where": pd.Series([flag.where for flag in flags], dtype=str),
            "message": pd.Series([flag.message for flag in flags], dtype=str),
        }
    )
    for name, value in _period_values(before, after).items():
        table[name] = pd.Series([value] * len(table), dtype=str)
    return table[["code", "where", "message", *PERIOD_COLUMNS]]


def cumulative_flags(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """All runs' flag tables, by period (run-level flags of a period first, as each run wrote)."""
    columns = ["code", "where", "message", *PERIOD_COLUMNS]
    frames = [part.reindex(columns=columns) for part in parts if len(part)]
    if not frames:
        return pd.DataFrame({name: pd.Series(dtype=str) for name in columns})
    combined = pd.concat(frames, ignore_index=True).fillna("")
    return combined.sort_values("period_end", kind="stable").reset_index(drop=True)


def per_region_polygons(polygons: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """One row per (polygon, region) from run-change's comma-joined ``region_ids``."""
    ids = polygons["region_ids"].fillna("").astype(str).str.split(",")
    exploded = polygons.assign(region_id=ids).explode("region_id", ignore_index=True)
    kept = exploded[exploded["region_id"] != ""]
    return gpd.GeoDataFrame(kept, geometry=polygons.geometry.name, crs=polygons.crs)


def cumulative_polygons(parts: Sequence[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    """All runs' tagged polygons in one frame, in the CRS of the first run that has one."""
    crs = next((part.crs for part in parts if part.crs is not None), None)
    if not parts:
        return gpd.GeoDataFrame(
            {name: pd.Series(dtype=str) for name in ("region_id", *PERIOD_COLUMNS)},
            geometry=gpd.GeoSeries([], crs=crs),
            crs=crs,
        )
    aligned = [
        part.to_crs(crs) if crs is not None and part.crs is not None else part for part in parts
    ]
    combined = pd.concat(aligned, ignore_index=True)
    return gpd.GeoDataFrame(combined, geometry=aligned[0].geometry.name, crs=crs)


def cumulative_timeseries(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The loss time series: all runs' tagged per-region tables, by period then region."""
    if not parts:
        return pd.DataFrame(
            {name: pd.Series(dtype=str) for name in ("region_id", *PERIOD_COLUMNS)}
            | {"forest_loss_ha": pd.Series(dtype=float)}
        )
    columns = ["region_id", *PERIOD_COLUMNS, "forest_loss_ha"]
    if any("flags" in part.columns for part in parts):
        columns.append("flags")  # each region's quality flag codes in that period
    combined = pd.concat([part.reindex(columns=columns) for part in parts], ignore_index=True)
    if "flags" in columns:
        combined["flags"] = combined["flags"].fillna("").astype(str)
    return combined.sort_values(["period_end", "region_id"], kind="stable").reset_index(drop=True)
