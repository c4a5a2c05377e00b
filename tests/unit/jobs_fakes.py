"""Deterministic stand-ins for the jobs backend: a JSON scene list and an NDVI change runner.

The scene source reads ``spec.catalog.catalog`` as a JSON list of
``{"id", "datetime", "href"}``; tests add scenes by rewriting it. The runner
reads the red and NIR bands of both scenes (Landsat-7 stacks: band 3 red,
band 4 NIR), calls forest NDVI > 0.6, and reports loss per half of the scene
(``west`` / ``east``), the AFTER class map (``after_classes.tif``: 1 forest,
0 non-forest, 255 no data) and the real season flag of the two dates. It is
used in-process and, through
``--backend tests.unit.jobs_fakes:backend``, in ``geoseg jobs`` subprocesses.

Environment variables steer it in subprocesses:

- ``GEOSEG_FAKE_LOG``: a file where each run appends ``BEFORE AFTER``;
- ``GEOSEG_FAKE_BARRIER``: a folder; the runner writes ``started-AFTER`` there and
  waits for a ``go`` file before finishing (a test kills it meanwhile).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import rasterio.features
from numpy.typing import NDArray
from shapely.geometry import shape

from geoseg.catalog.stac import local_path
from geoseg.change.flags import FlagRule, season_flags
from geoseg.jobs.interfaces import ChangeOutputs, JobBackend, SceneRef
from geoseg.jobs.spec import AreaSpec, CatalogQuery
from geoseg.labels import CLASS_NAMES_TAG, LABEL_NODATA, format_class_names
from geoseg.report.html import Quicklook

CHIAPAS = (
    ("LE70220491999322EDC01", "1999-11-18T16:30:00+00:00", "LE70220491999322EDC01_stack.gtif"),
    ("LE70220492002106EDC00", "2002-04-16T16:30:00+00:00", "LE70220492002106EDC00_stack.gtif"),
)
BARRIER_TIMEOUT_S = 120.0
FOREST_NAMES = {0: "non-forest", 1: "forest"}


def write_scene_list(path: Path, scenes: list[tuple[str, str, Path]]) -> Path:
    """Write the fake catalog: ``(id, ISO datetime, file)`` per scene."""
    entries = [{"id": ident, "datetime": when, "href": str(href)} for ident, when, href in scenes]
    path.write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return path


def chiapas_scenes(data: Path) -> list[tuple[str, str, Path]]:
    """The two real Chiapas dates."""
    return [(ident, when, data / "chiapas_twodate" / name) for ident, when, name in CHIAPAS]


def cleared_copy(source: Path, target: Path, rows: slice, cols: slice) -> Path:
    """A copy of ``source`` whose NIR (band 4) drops to the red level in a block: a clearing."""
    shutil.copyfile(source, target)
    with rasterio.open(target, "r+") as dataset:
        red = dataset.read(3)
        nir = dataset.read(4)
        nir[rows, cols] = red[rows, cols]
        dataset.write(nir, 4)
    return target


class ListSceneSource:
    """Scenes from the JSON list named by ``query.catalog``."""

    def scenes(self, area: AreaSpec, query: CatalogQuery) -> list[SceneRef]:
        if query.catalog is None:
            raise AssertionError("the fake scene source needs catalog: LIST.json")
        entries = json.loads(Path(query.catalog).read_text(encoding="utf-8"))
        return [
            SceneRef(
                id=entry["id"],
                datetime=datetime.fromisoformat(entry["datetime"]),
                href=entry["href"],
            )
            for entry in entries
        ]


def _ndvi(href: str) -> tuple[NDArray[np.float64], NDArray[np.bool_], rasterio.Affine, str]:
    with rasterio.open(local_path(href, allow_external_hrefs=True)) as dataset:
        red = dataset.read(3).astype(np.float64)
        nir = dataset.read(4).astype(np.float64)
        valid = (red > 0) & (nir > 0)
        transform, crs = dataset.transform, dataset.crs.to_string()
    total = np.where(valid, nir + red, 1.0)
    return np.where(valid, (nir - red) / total, 0.0), valid, transform, crs


def _quicklook(href: str) -> Quicklook:
    with rasterio.open(local_path(href, allow_external_hrefs=True)) as dataset:
        rgb = dataset.read([3, 2, 1]).astype(np.float64)
        bounds = tuple(float(value) for value in dataset.bounds)
        crs = dataset.crs.to_string()
    low, high = np.percentile(rgb, [2, 98])
    scaled = np.clip((rgb - low) / max(high - low, 1.0) * 255, 0, 255).astype(np.uint8)
    return Quicklook(rgb=np.moveaxis(scaled, 0, -1), bounds=bounds, crs=crs)  # type: ignore[arg-type]


def _wait_for_go(barrier: Path, after: SceneRef) -> None:
    (barrier / f"started-{after.id}").write_text(str(os.getpid()), encoding="utf-8")
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while not (barrier / "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no 'go' file in {barrier}")
        time.sleep(0.02)


class NdviChangeRunner:
    """Forest (NDVI > 0.6) at BEFORE and not at AFTER is loss; regions are the scene halves."""

    def model_hash(self, model: str) -> str:
        return hashlib.sha256(f"fake-model:{model}".encode()).hexdigest()

    def run(
        self,
        before: SceneRef,
        after: SceneRef,
        area: AreaSpec,
        model: str,
        out_dir: Path,
        work_dir: Path,
    ) -> ChangeOutputs:
        log = os.environ.get("GEOSEG_FAKE_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"{before.id} {after.id}\n")
        barrier = os.environ.get("GEOSEG_FAKE_BARRIER")
        if barrier:
            _wait_for_go(Path(barrier), after)
        ndvi_before, valid_before, transform, crs = _ndvi(before.href)
        ndvi_after, valid_after, _, _ = _ndvi(after.href)
        loss = (ndvi_before > 0.6) & (ndvi_after <= 0.6) & valid_before & valid_after
        middle = loss.shape[1] // 2
        rows, polygons = [], []
        for region, cols in (("west", slice(0, middle)), ("east", slice(middle, None))):
            mask = np.zeros_like(loss)
            mask[:, cols] = loss[:, cols]
            pixels = int(mask.sum())
            rows.append({"region_id": region, "forest_loss_ha": pixels * 0.09, "pixels": pixels})
            for geometry, _ in rasterio.features.shapes(
                mask.astype(np.uint8), mask=mask, transform=transform
            ):
                polygons.append({"region_id": region, "geometry": shape(geometry)})
        regions = pd.DataFrame(rows)
        frame = gpd.GeoDataFrame(
            pd.DataFrame(polygons, columns=["region_id", "geometry"]), geometry="geometry", crs=crs
        )
        stats = out_dir / "change_stats.csv"
        regions.to_csv(stats, index=False, lineterminator="\n")
        mask_path = out_dir / "loss.tif"
        profile = {
            "driver": "GTiff",
            "height": loss.shape[0],
            "width": loss.shape[1],
            "count": 1,
            "dtype": "uint8",
            "crs": crs,
            "transform": transform,
        }
        with rasterio.open(mask_path, "w", **profile) as dataset:
            dataset.write(loss.astype(np.uint8), 1)
        classes_path = out_dir / "after_classes.tif"
        after_classes = np.where(valid_after, ndvi_after > 0.6, LABEL_NODATA).astype(np.uint8)
        with rasterio.open(classes_path, "w", nodata=LABEL_NODATA, **profile) as dataset:
            dataset.write(after_classes, 1)
            dataset.update_tags(**{CLASS_NAMES_TAG: format_class_names(FOREST_NAMES)})
        return ChangeOutputs(
            files=(stats, mask_path, classes_path),
            regions=regions,
            polygons=frame,
            quicklook=_quicklook(after.href),
            after_classes=classes_path,
            flags=tuple(season_flags(before.datetime, after.datetime, FlagRule())),
        )


def backend() -> JobBackend:
    """The fake backend (``--backend tests.unit.jobs_fakes:backend``)."""
    return JobBackend(scenes=ListSceneSource(), runner=NdviChangeRunner())
