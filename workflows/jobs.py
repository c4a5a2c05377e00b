"""The real backend of scheduled jobs: the STAC catalog and ``run-change``, wiring only.

:func:`default_backend` is what ``geoseg jobs`` uses unless ``--backend`` names
another factory. Scenes come from :func:`geoseg.catalog.stac.search` (the embedded
catalog, another static catalog, or a STAC API); change runs call
:func:`workflows.run_change.run_change` and read back its GeoPackage; the report's
quicklook is the AFTER scene's true colour over the job's bbox, with its date
and the attribution its catalog item records (``geoseg:attribution``); the
report's masked areas are the pixels without a class in either date's class map.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
from shapely.geometry import box

from geoseg.bbox import BBox, make_bbox
from geoseg.catalog.mosaic import coarser_grid, mosaic_source, target_grid
from geoseg.catalog.stac import (
    EMBEDDED,
    IMAGERY,
    SceneEntry,
    is_api_url,
    open_catalog,
    search,
    verify_entry,
)
from geoseg.errors import CatalogError, JobError, NoSceneError
from geoseg.grid import RasterGrid
from geoseg.io.checkpoint import read_card
from geoseg.io.raster import read_info
from geoseg.io.stac import read_static_catalog
from geoseg.io.staging import publish_file
from geoseg.io.vector import read_vector, write_layers
from geoseg.io.warp import read_on_grid
from geoseg.jobs.history import per_region_polygons
from geoseg.jobs.interfaces import ChangeOutputs, JobBackend, SceneRef
from geoseg.jobs.spec import AreaSpec, CatalogQuery, as_utc
from geoseg.models.loading import resolve_model_dir
from geoseg.report.html import MAP_WIDTH, Quicklook
from geoseg.report.mapping import mask_polygons, unseen_mask
from geoseg.report.quicklook import stretch_rgb
from workflows.run_change import run_change

BBOX_REGION_ID = "bbox"
"""Region id of a job watching a bbox without a regions file."""
CHANGE_FILE = "change.gpkg"
REGIONS_FILE = "regions.gpkg"


def _selected_regions(area: AreaSpec) -> gpd.GeoDataFrame:
    if area.regions is None:
        raise JobError("the job's area has no regions file")
    frame = read_vector(area.regions, layer=area.region_layer, columns=[area.region_id_field])
    if not area.region_ids:
        return frame
    ids = frame[area.region_id_field].astype(str)
    missing = sorted(set(area.region_ids) - set(ids))
    if missing:
        raise JobError(
            f"{area.regions}: no region with {area.region_id_field} in "
            f"{missing}; the file has {sorted(set(ids))[:20]}"
        )
    return frame[ids.isin(area.region_ids)]


def area_bbox(area: AreaSpec) -> BBox:
    """The job's bbox, or the bounds of its selected regions."""
    bbox = area.validated_bbox()
    if bbox is not None:
        return bbox
    regions = _selected_regions(area)
    return make_bbox(tuple(float(value) for value in regions.total_bounds), regions.crs)


class CatalogSceneSource:
    """Scenes of a STAC catalog over the job's area, in the query's date range.

    Found with :func:`geoseg.catalog.stac.search`; a static catalog is read
    afresh at every call (not from the per-process cache), so a long-running
    scheduler sees scenes added to it.
    """

    def scenes(self, area: AreaSpec, query: CatalogQuery) -> list[SceneRef]:
        """The matching scenes (empty when none is in the date range yet)."""
        try:
            entries = search(
                area_bbox(area),
                query.datetime_range,
                location=query.catalog,
                collection=query.collection or IMAGERY,
                cached=False,
            )
        except NoSceneError:
            entries = []
        except CatalogError:
            if not is_api_url(query.catalog):
                raise
            entries = []  # a failed STAC API search counts as no new scene yet
        return [
            SceneRef(
                id=entry.id,
                datetime=entry.start,
                collection=entry.collection,
                href=entry.data.href,
                catalog=query.catalog or "",
            )
            for entry in entries
        ]


def _entry(scene: SceneRef) -> SceneEntry | None:
    if is_api_url(scene.catalog):
        return None
    catalog = open_catalog(scene.catalog or None, cached=False)
    return next((entry for entry in catalog.entries if entry.id == scene.id), None)


ATTRIBUTION = "geoseg:attribution"
"""Item property holding the imagery's attribution text (see ``data_catalog/build.py``)."""


def scene_attribution(scene: SceneRef) -> str:
    """The attribution (else the licence) a static catalog's item records; empty if none."""
    if is_api_url(scene.catalog):
        return ""
    _, items = read_static_catalog(scene.catalog or EMBEDDED)
    properties: dict[str, Any] = next(
        (item.get("properties", {}) for item in items if item["id"] == scene.id), {}
    )
    text = properties.get(ATTRIBUTION) or properties.get("license") or ""
    return str(text)


def scene_quicklook(scene: SceneRef, bbox: BBox) -> Quicklook | None:
    """True colour of ``scene`` over ``bbox``, at most :data:`MAP_WIDTH` pixels a side."""
    entry = _entry(scene)
    if entry is None:
        return None
    grid = coarser_grid(target_grid(bbox, [entry]), MAP_WIDTH)
    source = mosaic_source(grid, [(entry, verify_entry(entry))], ["red", "green", "blue"])
    values, valid = source.read(grid.full_window)
    return Quicklook(
        stretch_rgb(values, valid),
        grid.bounds,
        grid.crs.to_string(),
        acquired=f"{as_utc(scene.datetime):%Y-%m-%d}",
        attribution=scene_attribution(scene),
    )


def masked_areas(before: Path, after: Path) -> gpd.GeoDataFrame:
    """Pixels without a class at either date (class-map nodata), as polygons.

    Read on BEFORE's grid coarsened to at most twice :data:`MAP_WIDTH` pixels
    a side: what the report's map can show.
    """
    grid: RasterGrid = coarser_grid(read_info(before).grid, 2 * MAP_WIDTH)
    _, valid_before = read_on_grid(before, grid, grid.full_window)
    _, valid_after = read_on_grid(after, grid, grid.full_window)
    return mask_polygons(unseen_mask(valid_before, valid_after), grid)


def regions_file(area: AreaSpec, out_dir: Path) -> tuple[Path, str]:
    """A regions GeoPackage for run-change: the selected regions, or the bbox as one region."""
    path = out_dir / REGIONS_FILE
    if area.regions is None:
        bbox = area_bbox(area)
        frame = gpd.GeoDataFrame(
            {"region_id": [BBOX_REGION_ID]}, geometry=[box(*bbox.bounds)], crs=bbox.crs
        )
        write_layers(path, {"regions": frame})
        return path, "region_id"
    write_layers(path, {"regions": _selected_regions(area)})
    return path, area.region_id_field


class RunChangeRunner:
    """Change between two scenes with :func:`workflows.run_change.run_change`.

    ``scheduler`` is a Dask scheduler address (default: ``DASK_SCHEDULER_ADDRESS``
    or a local cluster, as for ``geoseg run-change``).
    """

    def __init__(self, scheduler: str | None = None) -> None:
        self.scheduler = scheduler

    def model_hash(self, model: str) -> str:
        """The SHA-256 of the model's weights, from its card."""
        return read_card(resolve_model_dir(model)).weights_sha256

    def run(
        self,
        before: SceneRef,
        after: SceneRef,
        area: AreaSpec,
        model: str,
        out_dir: Path,
        work_dir: Path,
    ) -> ChangeOutputs:
        """Run change from ``before`` to ``after`` and copy its outputs into ``out_dir``.

        run-change writes into ``work_dir``, which outlives a killed attempt, so
        a retry resumes its finished chunks. Its run time (recorded in the
        GeoPackage) is the AFTER scene's acquisition time (unless
        ``SOURCE_DATE_EPOCH`` is set), so the outputs depend on the scene pair,
        model and spec only (a retry writes the same bytes as an uninterrupted
        run); the job's own timings are in the state store.
        """
        bbox = area_bbox(area)
        regions, id_field = regions_file(area, work_dir)
        change = work_dir / CHANGE_FILE
        outputs = run_change(
            bbox,
            f"{as_utc(before.datetime):%Y-%m-%d}",
            f"{as_utc(after.datetime):%Y-%m-%d}",
            regions=regions,
            region_id_field=id_field,
            model=model,
            out=change,
            catalog=after.catalog or None,
            scheduler=self.scheduler,
            run_time=as_utc(after.datetime),
        )
        # the manifest JSON is left out: its timings differ between attempts; the same
        # provenance, without timings, is the run_manifest table of the GeoPackage
        published = [Path(outputs.geopackage), *map(Path, outputs.labels)]
        files = tuple(publish_file(path, out_dir / path.name) for path in published)
        before_classes, after_classes = (out_dir / Path(path).name for path in outputs.labels)
        statistics = pd.DataFrame(read_vector(change, layer="regions").drop(columns="geometry"))
        table = statistics.rename(columns={"deforestation_ha": "forest_loss_ha"})
        polygons = per_region_polygons(read_vector(change, layer="deforestation"))
        return ChangeOutputs(
            files=files,
            regions=table,
            polygons=polygons,
            quicklook=scene_quicklook(after, bbox),
            after_classes=after_classes,
            flags=outputs.flags,
            masked=masked_areas(before_classes, after_classes),
        )


def default_backend() -> JobBackend:
    """The catalog scene source and the run-change runner."""
    return JobBackend(scenes=CatalogSceneSource(), runner=RunChangeRunner())
