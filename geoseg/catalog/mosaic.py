"""Catalog scenes put onto one target grid: the grid, and a mosaic raster source.

:func:`target_grid` defines the grid of a run from the bbox: an odc-geo
:class:`~odc.geo.geobox.GeoBox` in the scenes' CRS at their resolution, its
pixel edges snapped to the first scene's pixel grid (so a bbox given in
lon/lat or in UTM that covers the same pixels gives the same grid), clipped to
the scenes' coverage with a warning.

:class:`MosaicSource` implements the raster-source protocol of the predict
workflow (``grid``, ``band_names``, ``read(window)``): each window is read from
every matching scene onto the target grid (GDAL warping in
:func:`geoseg.io.warp.read_bands_on_grid`), the catalog's scale and offset give
physical units, and where scenes overlap the first scene holding data wins (scenes in catalog
search order: acquisition time, then id). It holds only paths and numbers, so
it pickles to Dask workers.

Pixels a scene's quality band flags (cloud, shadow, snow, fill: see
:mod:`geoseg.quality`) and pixels at a band's declared saturation value are
not data of that scene: the next scene may fill them, else they stay invalid
(label 255 downstream). Clouds and shadows are grown by ``mask_buffer``
pixels; the quality band is read with that halo, so the mask does not depend
on the window. :meth:`MosaicSource.mask_counts` gives, per scene, the pixels
observed and masked in a window (additive, for the run manifest).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from odc.geo import xy_
from odc.geo.geobox import GeoBox
from rasterio.warp import transform_bounds

from geoseg.bbox import BBox, clip_to_coverage, to_crs, union
from geoseg.catalog.stac import SceneEntry
from geoseg.errors import CatalogError, InputError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.io.warp import read_bands_on_grid
from geoseg.limits import DEFAULT_MASK_BUFFER
from geoseg.quality import (
    QualityBand,
    QualityMask,
    check_buffer,
    mask_with_halo,
    quality_mask,
    saturated,
)


@dataclass(frozen=True, slots=True)
class SceneLayer:
    """One scene's part of a mosaic: its file, bands in model order and their scaling.

    ``quality`` is the scene's quality band (None: it has none) and
    ``saturation`` the raw saturation value of each band read (None: not declared).
    """

    scene_id: str
    path: str
    sha256: str
    bands: tuple[int, ...]
    scales: tuple[float, ...]
    offsets: tuple[float, ...]
    nodata: float | None
    quality: QualityBand | None = None
    saturation: tuple[float | None, ...] = ()


def scene_layer(entry: SceneEntry, path: str, band_names: Sequence[str]) -> SceneLayer:
    """The layer reading ``band_names`` (common names) of ``entry`` from ``path``."""
    indexes = entry.band_indexes(band_names)
    infos = {band.index: band for band in entry.bands}
    nodatas = {infos[index].nodata for index in indexes}
    if len(nodatas) > 1:
        raise CatalogError(f"scene {entry.id}: its bands disagree on nodata ({nodatas})")
    return SceneLayer(
        scene_id=entry.id,
        path=path,
        sha256=entry.data.sha256 or "",
        bands=tuple(indexes),
        scales=tuple(infos[index].scale for index in indexes),
        offsets=tuple(infos[index].offset for index in indexes),
        nodata=nodatas.pop(),
        quality=entry.quality,
        saturation=tuple(infos[index].saturation for index in indexes),
    )


def _scene_grid(entry: SceneEntry) -> RasterGrid:
    if entry.grid is None:
        raise CatalogError(f"scene {entry.id}: the catalog gives no proj: grid for it")
    return entry.grid


def _bounds_in(grid: RasterGrid, crs: Any) -> tuple[float, float, float, float]:
    minx, miny, maxx, maxy = transform_bounds(grid.crs, crs, *grid.bounds, densify_pts=21)
    return (minx, miny, maxx, maxy)


def target_grid(
    bbox: BBox,
    scenes: Sequence[SceneEntry],
    *,
    crs: str | None = None,
    resolution: float | None = None,
) -> RasterGrid:
    """The run's grid over ``bbox``, snapped to the scenes' pixels and clipped to them.

    Parameters
    ----------
    bbox
        The area, in any CRS.
    scenes
        The matching scenes (at least one), in mosaic order.
    crs
        Target CRS; default the CRS most of the scenes share (ties: the first).
    resolution
        Pixel size in target CRS units; default the finest of the scenes in
        that CRS.
    """
    if not scenes:
        raise CatalogError("no scenes to put on a grid")
    grids = [_scene_grid(entry) for entry in scenes]
    if crs is None:
        # most_common keeps first-seen order among ties
        crs = Counter(grid.crs.to_string() for grid in grids).most_common(1)[0][0]
    reference = next((grid for grid in grids if grid.crs.to_string() == crs), None)
    if resolution is None:
        if reference is None:
            raise InputError(f"give a resolution: no scene is in the target CRS {crs}")
        resolution = min(grid.resolution[0] for grid in grids if grid.crs == reference.crs)
    area = to_crs(bbox, crs)
    coverage = union(BBox(*_bounds_in(grid, area.crs), area.crs) for grid in grids)
    clipped = clip_to_coverage(area, coverage, what="the matching scenes")
    anchor = xy_(0.0, 0.0)
    if reference is not None:
        anchor = xy_(
            (reference.transform.c / resolution) % 1.0, (reference.transform.f / resolution) % 1.0
        )
    with warnings.catch_warnings():
        # odc-geo multiplies Affine objects with `*`, which affine >= 3 flags as pending deprecation
        warnings.filterwarnings("ignore", "Use `@` matmul", PendingDeprecationWarning)
        geobox = GeoBox.from_bbox(clipped.bounds, clipped.crs, resolution=resolution, anchor=anchor)
    height, width = geobox.shape
    return RasterGrid(area.crs, geobox.affine, int(height), int(width))


def _quality_reader(
    layer: SceneLayer, quality: QualityBand, grid: RasterGrid
) -> Callable[[PixelWindow], QualityMask]:
    def read(window: PixelWindow) -> QualityMask:
        values, valid = read_bands_on_grid(layer.path, [quality.index], layer.nodata, grid, window)
        return quality_mask(values[0], quality.convention, valid)

    return read


@dataclass(frozen=True)
class MosaicSource:
    """Scenes mosaicked onto ``grid``, first valid unmasked pixel wins; physical units.

    ``mask_buffer`` grows each scene's clouds and cloud shadows (pixels).
    """

    grid: RasterGrid
    bands: tuple[str, ...]
    layers: tuple[SceneLayer, ...]
    mask_buffer: int = DEFAULT_MASK_BUFFER

    def __post_init__(self) -> None:
        if not self.layers:
            raise CatalogError("a mosaic needs at least one scene")
        check_buffer(self.mask_buffer)

    def _masked(
        self, layer: SceneLayer, window: PixelWindow, raw: NDArray[Any]
    ) -> NDArray[np.bool_]:
        """Pixels of ``window`` the layer's quality band or saturation values mask."""
        masked = (
            saturated(raw, layer.saturation)
            if layer.saturation
            else np.zeros(window.shape, dtype=bool)
        )
        if layer.quality is not None:
            reader = _quality_reader(layer, layer.quality, self.grid)
            masked |= mask_with_halo(reader, window, self.mask_buffer)
        return masked

    @property
    def band_names(self) -> list[str]:
        """Band common names in the order :meth:`read` returns them."""
        return list(self.bands)

    def read(self, window: PixelWindow) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
        """``window`` of the mosaic: float32 ``(bands, rows, cols)`` and valid ``(rows, cols)``.

        Invalid pixels hold 0.
        """
        values = np.zeros((len(self.bands), *window.shape), dtype=np.float32)
        valid = np.zeros(window.shape, dtype=bool)
        for layer in self.layers:
            raw, layer_valid = read_bands_on_grid(
                layer.path, layer.bands, layer.nodata, self.grid, window
            )
            take = layer_valid & ~valid
            if not take.any():
                continue
            take &= ~self._masked(layer, window, raw)
            if not take.any():
                continue
            scales = np.asarray(layer.scales, dtype=np.float32)[:, None]
            offsets = np.asarray(layer.offsets, dtype=np.float32)[:, None]
            values[:, take] = raw[:, take].astype(np.float32) * scales + offsets
            valid |= take
            if valid.all():
                break
        return values, valid

    @property
    def identity(self) -> str:
        """SHA-256 of :meth:`fingerprint`: changes whenever the pixels may change."""
        text = json.dumps(self.fingerprint(), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def label(self) -> str:
        """The scene ids, for messages."""
        return "mosaic of " + ", ".join(layer.scene_id for layer in self.layers)

    def mask_counts(self, window: PixelWindow) -> NDArray[np.int64]:
        """Per scene, ``[observed, masked]`` pixels of ``window``: ``(scenes, 2)`` int64.

        Observed: the scene holds data there (its bands' nodata); masked: of
        those, the ones its quality band or saturation values mask. Additive
        over windows.
        """
        counts = np.zeros((len(self.layers), 2), dtype=np.int64)
        for number, layer in enumerate(self.layers):
            raw, observed = read_bands_on_grid(
                layer.path, layer.bands, layer.nodata, self.grid, window
            )
            counts[number] = (
                np.count_nonzero(observed),
                np.count_nonzero(observed & self._masked(layer, window, raw)),
            )
        return counts

    def unmasked(self) -> MosaicSource:
        """The same scenes without quality masks (for pictures of the imagery itself)."""
        return replace(
            self,
            layers=tuple(replace(layer, quality=None, saturation=()) for layer in self.layers),
        )

    def on_grid(self, grid: RasterGrid) -> MosaicSource:
        """The same mosaic on another grid (e.g. a coarser one for a quicklook)."""
        return replace(self, grid=grid)

    def with_bands(self, entries: Sequence[SceneEntry], band_names: Sequence[str]) -> MosaicSource:
        """The same scenes with other bands (``entries`` in this mosaic's order)."""
        by_id = {entry.id: entry for entry in entries}
        layers = tuple(
            scene_layer(by_id[layer.scene_id], layer.path, band_names) for layer in self.layers
        )
        return replace(self, bands=tuple(band_names), layers=layers)

    def fingerprint(self) -> dict[str, Any]:
        """Everything that decides the pixel values, as JSON-ready data (for run hashes)."""
        return {
            "crs": self.grid.crs.to_string(),
            "transform": list(self.grid.transform)[:6],
            "shape": [self.grid.height, self.grid.width],
            "bands": list(self.bands),
            "mask_buffer": self.mask_buffer,
            "scenes": [
                {
                    "id": layer.scene_id,
                    "sha256": layer.sha256,
                    "bands": list(layer.bands),
                    "scales": list(layer.scales),
                    "offsets": list(layer.offsets),
                    "nodata": layer.nodata,
                    "quality": None
                    if layer.quality is None
                    else [layer.quality.index, layer.quality.convention.value],
                    "saturation": list(layer.saturation),
                }
                for layer in self.layers
            ],
        }


def mosaic_source(
    grid: RasterGrid,
    scenes: Sequence[tuple[SceneEntry, str]],
    band_names: Sequence[str],
    *,
    mask_buffer: int = DEFAULT_MASK_BUFFER,
) -> MosaicSource:
    """A :class:`MosaicSource` of ``scenes`` (entry, verified local path) on ``grid``.

    ``mask_buffer``: pixels by which each scene's clouds and shadows grow.
    """
    layers = tuple(scene_layer(entry, path, band_names) for entry, path in scenes)
    return MosaicSource(grid, tuple(band_names), layers, mask_buffer)


def coarser_grid(grid: RasterGrid, max_side: int) -> RasterGrid:
    """``grid`` with pixels enlarged by a whole factor so neither side exceeds ``max_side``."""
    return grid.zoom_out(max(1, -(-max(grid.height, grid.width) // max_side)))
