"""Deforestation figures of issue 20, measured through the ``geoseg`` CLI on real data.

Every geoseg step runs as a subprocess (``python -m geoseg ...`` with the chosen
tree on ``PYTHONPATH``), so the same script measures the code before and after a
change: ``--tree /work/baseline`` for the old code, the default is the tree this
script sits in. What it reads back is only what the CLI writes (the regions
table beside ``--stats``, the ``deforestation`` layer of the GeoPackage), and
the reference figures are computed here, independently of geoseg.

1. **No-change pairs** (Slovenia, ``sites/eolearn_slovenia_sentinel2_2015``,
   Sentinel-2 L1C, 2015-07-11, 08-30 and 09-09, no real change): ``geoseg
   predict --model forest --bands blue=2,green=3,red=4,nir=8
   --probabilities`` on each date, ``geoseg change`` on each pair; the reported
   deforestation as a share of the forest area before (target: below 1%).
2. **Chiapas pair**: the README's ``geoseg run-change`` example; the share of
   the ``deforestation`` polygons' area on pixels that band 8 of each Landsat-7
   stack marks as cloud shadow (2) or cloud (4) (target: none), and the
   warnings the run printed (the season flag should fire: November vs April).
3. **Guadeloupe areas** (EPSG:3395, about 16 N): ``geoseg change forest_t1.tif
   forest_t3.tif --class-map forest``; the reported loss, forest and polygon
   areas and perimeters against geodesic references (pyproj ``Geod``) of the
   same pixels and polygons.
4. **Simulated clearings** (``--skip-clearings`` to leave out): real
   non-forest pixels of a scene pasted as blocks of 0.5, 1, 5 and 20 ha into
   reference forest of the same scene (Zion: the model card's test rows
   1000-1427 of the Landsat-8 scene, NLCD forest; Slovenia 2015-07-11, its
   dense labels) to make an AFTER image; BEFORE and AFTER through ``predict``
   and ``change``; per size the detected-loss recall, precision and area error.

Usage::

    PY=/work/main/.venv/bin/python
    $PY benchmarks/deforestation_checks.py --tree /work/baseline   # the old code
    $PY benchmarks/deforestation_checks.py --json out/checks.json   # this tree

The data directory is ``--data-dir``, else ``$GEOSEG_DATA_DIR``, else
``../shared/data`` beside the tree. About 3 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
import shapely
from numpy.typing import NDArray
from pyproj import CRS, Geod, Transformer
from rasterio.features import rasterize
from scipy import ndimage
from shapely.geometry import box
from shapely.geometry.polygon import orient

SLOVENIA = "sites/eolearn_slovenia_sentinel2_2015"
SLOVENIA_DATES = ("20150711", "20150830", "20150909")
SLOVENIA_BANDS = "blue=2,green=3,red=4,nir=8"  # B2, B3, B4, B8 (band descriptions)
SLOVENIA_FOREST = (2,)  # labels.tif: 1 cultivated, 2 forest, 3 grassland, 4 shrubland, 8 built
SLOVENIA_NON_FOREST = (1, 3, 4, 8)

ZION_SCENE = "zion/zion_landsat8_20150818_b2345.tif"
ZION_LABELS = "zion/nlcd_generalized_on_landsat_grid.tif"
ZION_TEST_ROWS = (1000, 1428)  # the Zion test block of the forest cards
ZION_FOREST = (4,)
ZION_NON_FOREST = (2, 3, 5, 6, 7)  # developed, barren, shrubland, herbaceous, cultivated

CHIAPAS_STACKS = {
    "1999-11-18": "chiapas_twodate/LE70220491999322EDC01_stack.gtif",
    "2002-04-16": "chiapas_twodate/LE70220492002106EDC00_stack.gtif",
}
CHIAPAS_QA_BAND = 8
CHIAPAS_CODES = {2: "shadow", 4: "cloud"}  # Fmask-style, checked against the imagery
CHIAPAS_RUN_CHANGE = (
    "run-change --bbox -93.34,15.69,-93.29,15.75 --before 1999-11-18 --after 2002-04-16 "
    "--regions naturalearth-countries --region-id-field iso_a3 --model forest "
    "--out chiapas_change.gpkg --stats chiapas_change.csv"
)

GUADELOUPE = "guadeloupe_forest"

# clearings pasted per size (ha): how many of each
ZION_CLEARINGS = {0.5: 10, 1.0: 10, 5.0: 6, 20.0: 3}
SLOVENIA_CLEARINGS = {0.5: 6, 1.0: 4, 5.0: 1, 20.0: 1}  # 5 and 20 ha find no non-forest block
FOREST_CLASS = 1  # forest: 0 non-forest, 1 forest


@dataclass
class Geoseg:
    """How to run one tree's ``geoseg`` CLI, and the log of what ran."""

    python: str
    tree: Path
    data_dir: Path
    work_dir: Path
    device: str
    sweep: tuple[float, ...] = ()
    commands: list[dict[str, Any]] = field(default_factory=list)
    _help: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """The environment of a geoseg subprocess: the tree, the data, offline."""
        env = dict(os.environ)
        env.update(
            PYTHONPATH=str(self.tree), GEOSEG_DATA_DIR=str(self.data_dir), HF_HUB_OFFLINE="1"
        )
        return env

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``geoseg ARGS`` in the work folder, timed and logged; stop on failure."""
        command = [self.python, "-m", "geoseg", *args]
        start = time.perf_counter()
        done = subprocess.run(
            command, cwd=self.work_dir, env=self.env(), capture_output=True, text=True
        )
        seconds = time.perf_counter() - start
        shown = "geoseg " + " ".join(args)
        self.commands.append({"command": shown, "seconds": round(seconds, 1)})
        print(f"  [{seconds:6.1f} s] {shown}", flush=True)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"failed ({done.returncode}): {shown}")
        return done

    def help(self, command: str) -> str:
        """``geoseg COMMAND --help`` (to pass only the options this tree knows)."""
        if command not in self._help:
            done = subprocess.run(
                [self.python, "-m", "geoseg", command, "--help"],
                env=self.env(),
                capture_output=True,
                text=True,
                check=True,
            )
            self._help[command] = done.stdout
        return self._help[command]

    def predict(self, image: Path, name: str, bands: str | None) -> tuple[Path, Path]:
        """``geoseg predict`` with forest; the class map and the probabilities."""
        labels, probabilities = self.work_dir / f"{name}.tif", self.work_dir / f"{name}.prob.tif"
        args = [str(image), "--model", "forest", "--device", self.device]
        if bands:
            args += ["--bands", bands]
        if "--allow-pixel-size-mismatch" in self.help("predict"):
            args.append("--allow-pixel-size-mismatch")  # the 10 m Sentinel-2 scenes, as asked
        self.run("predict", *args, "--probabilities", str(probabilities), "--out", str(labels))
        return labels, probabilities

    def change(
        self,
        before: tuple[Path, Path | None],
        after: tuple[Path, Path | None],
        regions: Path,
        name: str,
        extra: Sequence[str] = (),
    ) -> tuple[Path, Path, str]:
        """Run ``geoseg change``; the GeoPackage, the stats table and the terminal output."""
        gpkg, stats = self.work_dir / f"{name}.gpkg", self.work_dir / f"{name}.csv"
        args = [str(before[0]), str(after[0]), "--regions", str(regions), *extra]
        options = self.help("change")
        if before[1] is not None and after[1] is not None and "--before-probabilities" in options:
            args += ["--before-probabilities", str(before[1])]
            args += ["--after-probabilities", str(after[1])]
        done = self.run("change", *args, "--out", str(gpkg), "--stats", str(stats))
        return gpkg, stats, done.stdout + done.stderr


# ---------------------------------------------------------------- reading results


def regions_table(stats: Path) -> pd.DataFrame:
    """The per-region table written beside ``--stats`` (``NAME.regions.csv``)."""
    return pd.read_csv(stats.with_name(stats.stem + ".regions.csv"), dtype={"region_id": str})


def region_row(stats: Path, region_id: str) -> dict[str, Any]:
    table = regions_table(stats)
    rows = table[table["region_id"] == region_id]
    if len(rows) != 1:
        raise SystemExit(f"{stats}: no single row for region {region_id!r}")
    return {key: _plain(value) for key, value in rows.iloc[0].to_dict().items()}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def loss_layer(gpkg: Path) -> gpd.GeoDataFrame:
    """Every polygon of the ``deforestation`` layer (whatever status it carries)."""
    return pyogrio.read_dataframe(gpkg, layer="deforestation")


def loss_pixels(gpkg: Path, reference: Path) -> NDArray[np.bool_]:
    """The ``deforestation`` polygons burnt onto ``reference``'s grid (pixel centres)."""
    layer = loss_layer(gpkg)
    with rasterio.open(reference) as src:
        if len(layer) == 0:
            return np.zeros(src.shape, dtype=bool)
        layer = layer.to_crs(src.crs)
        burnt = rasterize(
            ((geometry, 1) for geometry in layer.geometry),
            out_shape=src.shape,
            transform=src.transform,
            fill=0,
            dtype="uint8",
        )
    return burnt.astype(bool)


def extent_regions(raster: Path, path: Path, region_id: str) -> Path:
    """A one-polygon region file covering ``raster``."""
    with rasterio.open(raster) as src:
        frame = gpd.GeoDataFrame(
            {"id": [region_id]}, geometry=[box(*src.bounds)], crs=src.crs.to_wkt()
        )
    frame.to_file(path, driver="GPKG")
    return path


def warnings_of(output: str) -> list[str]:
    """The warning lines of a geoseg run (Dask's own log lines left out)."""
    return [
        line.strip()
        for line in output.splitlines()
        if "warn" in line.lower() and "distributed." not in line
    ]


# ---------------------------------------------------------------- 1. no-change pairs


def no_change_pairs(geoseg: Geoseg, forest_option: bool) -> dict[str, Any]:
    print("\n== 1. No-change pairs: Slovenia, Sentinel-2 L1C 2015 (forest)", flush=True)
    folder = geoseg.data_dir / SLOVENIA
    maps = {
        date: geoseg.predict(folder / f"image_{date}.tif", f"slovenia_{date}", SLOVENIA_BANDS)
        for date in SLOVENIA_DATES
    }
    regions = extent_regions(maps[SLOVENIA_DATES[0]][0], geoseg.work_dir / "slovenia.gpkg", "scene")
    extra = ["--forest-classes", str(FOREST_CLASS)] if forest_option else []
    pairs: dict[str, Any] = {}
    for index, first in enumerate(SLOVENIA_DATES):
        for second in SLOVENIA_DATES[index + 1 :]:
            name = f"slovenia_{first}_{second}"
            gpkg, stats, output = geoseg.change(maps[first], maps[second], regions, name, extra)
            row = region_row(stats, "scene")
            share = (
                row["deforestation_ha"] / row["forest_before_ha"]
                if row["forest_before_ha"]
                else float("nan")
            )
            pairs[f"{first}->{second}"] = {
                "forest_before_ha": row["forest_before_ha"],
                "forest_after_ha": row["forest_after_ha"],
                "deforestation_ha": row["deforestation_ha"],
                "deforestation_share_of_forest": share,
                "polygons": len(loss_layer(gpkg)),
                "warnings": warnings_of(output),
            }
    if geoseg.sweep:
        print("  --min-probability sweep: deforestation as % of the forest per pair")
        for threshold in geoseg.sweep:
            shares = []
            for index, first in enumerate(SLOVENIA_DATES):
                for second in SLOVENIA_DATES[index + 1 :]:
                    name = f"slovenia_{first}_{second}_p{threshold:g}"
                    option = ["--min-probability", f"{threshold:g}"]
                    _, stats, _ = geoseg.change(
                        maps[first], maps[second], regions, name, [*extra, *option]
                    )
                    row = region_row(stats, "scene")
                    shares.append(row["deforestation_ha"] / row["forest_before_ha"])
            pairs[f"sweep {threshold:g}"] = shares
            print(f"    p >= {threshold:g}: " + ", ".join(f"{100 * s:.2f}%" for s in shares))
    for pair, figures in pairs.items():
        if pair.startswith("sweep"):
            continue
        percent = 100 * figures["deforestation_share_of_forest"]
        print(
            f"  {pair}: forest before {figures['forest_before_ha']:.2f} ha, deforestation "
            f"{figures['deforestation_ha']:.2f} ha = {percent:.2f}% "
            f"of the forest ({figures['polygons']} polygons; target < 1%)"
        )
    return pairs


# ---------------------------------------------------------------- 2. Chiapas


def chiapas(geoseg: Geoseg) -> dict[str, Any]:
    print("\n== 2. Chiapas: the README's run-change (1999-11-18 -> 2002-04-16)", flush=True)
    done = geoseg.run(*CHIAPAS_RUN_CHANGE.split())
    gpkg = geoseg.work_dir / "chiapas_change.gpkg"
    row = region_row(geoseg.work_dir / "chiapas_change.csv", "MEX")
    result: dict[str, Any] = {
        "MEX": {
            key: row[key] for key in ("forest_before_ha", "forest_after_ha", "deforestation_ha")
        },
        "polygons": len(loss_layer(gpkg)),
        "warnings": warnings_of(done.stdout + done.stderr),
        "scenes": {},
    }
    print(
        f"  MEX: forest before {row['forest_before_ha']:.1f} ha, "
        f"after {row['forest_after_ha']:.1f} ha, deforestation {row['deforestation_ha']:.1f} ha "
        f"({100 * row['deforestation_ha'] / row['forest_before_ha']:.1f}% of the forest)"
    )
    for date, relative in CHIAPAS_STACKS.items():
        stack = geoseg.data_dir / relative
        lost = loss_pixels(gpkg, stack)
        with rasterio.open(stack) as src:
            quality = src.read(CHIAPAS_QA_BAND)
        total = int(lost.sum())
        shares = {
            name: (int((lost & (quality == code)).sum()) / total if total else 0.0)
            for code, name in CHIAPAS_CODES.items()
        }
        masked = sum(shares.values())
        result["scenes"][date] = {"loss_pixels": total, **shares, "cloud_or_shadow": masked}
        print(
            f"  {date} band {CHIAPAS_QA_BAND}: {100 * masked:.1f}% of the deforestation area on "
            f"cloud or shadow codes (cloud {100 * shares['cloud']:.1f}%, shadow "
            f"{100 * shares['shadow']:.1f}%; {total} loss pixels; target 0%)"
        )
    seasonal = [line for line in result["warnings"] if "season" in line.lower()]
    flag = f"fired: {seasonal[0]}" if seasonal else "no warning mentions the season"
    print(f"  season flag: {flag}")
    for line in result["warnings"]:
        print(f"  warning: {line[:160]}")
    return result


# ---------------------------------------------------------------- 3. Guadeloupe areas


def geodesic_row_areas(src: rasterio.io.DatasetReader) -> NDArray[np.float64]:
    """Geodesic area (m2) of one pixel of each row, from its corners in lon/lat.

    Exact for a normal-aspect cylindrical CRS such as EPSG:3395, where every pixel
    of a row spans the same latitudes and the same longitude width; checked here
    on the first, middle and last columns.
    """
    crs = CRS.from_wkt(src.crs.to_wkt())
    to_lonlat = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    geod = crs.get_geod()
    transform = src.transform

    def pixel(row: int, col: int) -> float:
        xs = [col, col + 1, col + 1, col]
        ys = [row, row, row + 1, row + 1]
        x, y = zip(*(transform * (c, r) for c, r in zip(xs, ys, strict=True)), strict=True)
        lon, lat = to_lonlat.transform(x, y)
        return abs(geod.polygon_area_perimeter(lon, lat)[0])

    areas = np.array([pixel(row, 0) for row in range(src.height)])
    for col in (src.width // 2, src.width - 1):
        for row in (0, src.height // 2, src.height - 1):
            if abs(pixel(row, col) - areas[row]) > 1e-6 * areas[row]:
                raise SystemExit(f"{src.name}: pixel areas vary along a row; not cylindrical")
    return areas


def geodesic_area_perimeter(geometry: shapely.Geometry, crs: CRS) -> tuple[float, float]:
    """Geodesic area and perimeter (every ring) of a polygon, edges segmentized to 30 m.

    pyproj's ``Geod.geometry_area_perimeter`` sums signed ring areas (exterior
    counter-clockwise, holes clockwise: oriented here first) and its perimeter
    leaves out the holes, so the rings' lengths are summed here.
    """
    to_lonlat = Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    geod: Geod = crs.get_geod()

    def lonlat(shape: shapely.Geometry) -> shapely.Geometry:
        dense = shapely.segmentize(shape, 30.0)
        return shapely.transform(dense, lambda xy: np.column_stack(to_lonlat.transform(*xy.T)))

    polygons = list(getattr(geometry, "geoms", [geometry]))
    area = sum(geod.geometry_area_perimeter(lonlat(orient(p, 1.0)))[0] for p in polygons)
    perimeter = 0.0
    for polygon in polygons:
        for ring in (polygon.exterior, *polygon.interiors):
            lon, lat = np.asarray(lonlat(shapely.LinearRing(ring)).coords).T
            perimeter += geod.line_length(lon, lat)
    return abs(area), perimeter


def guadeloupe(geoseg: Geoseg) -> dict[str, Any]:
    print("\n== 3. Guadeloupe: ground areas in EPSG:3395 (World Mercator, ~16 N)", flush=True)
    folder = geoseg.data_dir / GUADELOUPE
    before, after = folder / "forest_t1.tif", folder / "forest_t3.tif"
    regions = extent_regions(before, geoseg.work_dir / "guadeloupe.gpkg", "extent")
    every_pixel = ["--min-loss-ha", "0"] if "--min-loss-ha" in geoseg.help("change") else []
    gpkg, stats, _ = geoseg.change(
        (before, None),
        (after, None),
        regions,
        "guadeloupe_change",
        ["--class-map", "forest", *every_pixel],  # areas of every lost pixel, not the rule
    )
    row = region_row(stats, "extent")
    with rasterio.open(before) as src:
        t1 = src.read(1)
        row_areas = geodesic_row_areas(src)
        crs = CRS.from_wkt(src.crs.to_wkt())
    with rasterio.open(after) as src:
        t3 = src.read(1)
    valid = (t1 != 255) & (t3 != 255)
    lost = (t1 == 1) & (t3 == 0) & valid
    forest = (t1 == 1) & valid

    def hectares(mask: NDArray[np.bool_]) -> float:
        return float((mask.sum(axis=1) * row_areas).sum() / 1e4)

    layer = loss_layer(gpkg)
    reference = [geodesic_area_perimeter(geometry, crs) for geometry in layer.geometry]
    geodesic_area_m2 = np.array([area for area, _ in reference])
    geodesic_perimeter_m = np.array([perimeter for _, perimeter in reference])
    polygon_area_error = layer["area_m2"].to_numpy() / geodesic_area_m2 - 1
    polygon_perimeter_error = layer["perimeter_m"].to_numpy() / geodesic_perimeter_m - 1
    result = {
        "reported_deforestation_ha": row["deforestation_ha"],
        "geodesic_deforestation_ha": hectares(lost),
        "reported_forest_before_ha": row["forest_before_ha"],
        "geodesic_forest_before_ha": hectares(forest),
        "reported_valid_area_ha": row["valid_area_ha"],
        "geodesic_valid_area_ha": hectares(valid),
        "polygons": len(layer),
        "polygon_area_m2_sum": float(layer["area_m2"].sum()),
        "polygon_geodesic_area_m2_sum": float(geodesic_area_m2.sum()),
        "polygon_area_max_abs_error": float(np.abs(polygon_area_error).max()),
        "polygon_perimeter_m_sum": float(layer["perimeter_m"].sum()),
        "polygon_geodesic_perimeter_m_sum": float(geodesic_perimeter_m.sum()),
        "polygon_perimeter_max_abs_error": float(np.abs(polygon_perimeter_error).max()),
    }
    for label, key in (("deforestation", "deforestation"), ("forest before", "forest_before")):
        reported, geodesic = result[f"reported_{key}_ha"], result[f"geodesic_{key}_ha"]
        print(
            f"  {label}: reported {reported:.1f} ha, geodesic {geodesic:.1f} ha "
            f"({100 * (reported / geodesic - 1):+.2f}%; target within 0.1%)"
        )
    area_excess = result["polygon_area_m2_sum"] / result["polygon_geodesic_area_m2_sum"] - 1
    length_excess = (
        result["polygon_perimeter_m_sum"] / result["polygon_geodesic_perimeter_m_sum"] - 1
    )
    print(
        f"  polygons ({len(layer)}): area_m2 sum {100 * area_excess:+.2f}% vs geodesic "
        f"(worst polygon {100 * result['polygon_area_max_abs_error']:.2f}%), perimeter_m sum "
        f"{100 * length_excess:+.2f}% "
        f"(worst {100 * result['polygon_perimeter_max_abs_error']:.2f}%)"
    )
    return result


# ---------------------------------------------------------------- 4. simulated clearings


@dataclass(frozen=True)
class Patch:
    """A pasted clearing: its target size and its block of pixels."""

    target_ha: float
    row: int
    col: int
    height: int
    width: int

    def slices(self) -> tuple[slice, slice]:
        """The patch's rows and columns."""
        return slice(self.row, self.row + self.height), slice(self.col, self.col + self.width)


def patch_shape(target_ha: float, pixel_m2: float) -> tuple[int, int]:
    """The smallest near-square block of whole pixels covering at least ``target_ha``.

    At least, so that a clearing of the minimum mapping unit's size is not
    smaller than the unit (Slovenia's 0.5 ha is 7 x 8 pixels of 99.9 m2, not 7 x 7).
    """
    pixels = int(np.ceil(target_ha * 1e4 / pixel_m2 - 1e-9))
    height = max(1, int(np.sqrt(pixels)))
    return height, int(np.ceil(pixels / height))


def block_positions(inside: NDArray[np.bool_], height: int, width: int) -> NDArray[np.int64]:
    """Top-left ``(row, col)`` of every ``height x width`` block lying wholly in ``inside``."""
    table = np.pad(inside.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (
        table[height:, width:]
        - table[:-height, width:]
        - table[height:, :-width]
        + table[:-height, :-width]
    )
    return np.argwhere(sums == height * width)


def paste_clearings(
    image: NDArray[Any],
    labels: NDArray[np.integer[Any]],
    forest: Sequence[int],
    non_forest: Sequence[int],
    counts: dict[float, int],
    pixel_m2: float,
    seed: int,
) -> tuple[NDArray[Any], list[Patch], list[str]]:
    """AFTER image: blocks of real non-forest pixels pasted into reference forest.

    Larger patches are placed first, each wholly on reference forest and at least
    5 pixels from the others; the pixels come from a block of the same shape
    lying wholly on the reference non-forest classes of the same image.
    """
    rng = np.random.default_rng(seed)
    after = image.copy()
    free = np.isin(labels, forest)
    source = np.isin(labels, non_forest)
    patches: list[Patch] = []
    notes: list[str] = []
    for target_ha in sorted(counts, reverse=True):
        height, width = patch_shape(target_ha, pixel_m2)
        sources = block_positions(source, height, width)
        if len(sources) == 0:
            notes.append(f"{target_ha} ha ({height}x{width} px): no non-forest block to copy")
            continue
        for _ in range(counts[target_ha]):
            places = block_positions(free, height, width)
            if len(places) == 0:
                notes.append(f"{target_ha} ha ({height}x{width} px): no room left in forest")
                break
            row, col = places[rng.integers(len(places))]
            from_row, from_col = sources[rng.integers(len(sources))]
            after[:, row : row + height, col : col + width] = image[
                :, from_row : from_row + height, from_col : from_col + width
            ]
            patch = Patch(target_ha, int(row), int(col), height, width)
            patches.append(patch)
            margin = 5
            free[
                max(0, row - margin) : row + height + margin,
                max(0, col - margin) : col + width + margin,
            ] = False
    return after, patches, notes


def write_like(template: Path, data: NDArray[Any], path: Path, window: tuple[int, int]) -> Path:
    """``data`` written with ``template``'s profile, band names and tags, rows ``window``."""
    with rasterio.open(template) as src:
        profile = src.profile.copy()
        transform = src.window_transform(
            rasterio.windows.Window(0, window[0], src.width, window[1] - window[0])
        )
        descriptions = src.descriptions
        band_tags = [src.tags(index) for index in range(1, src.count + 1)]
        tags = src.tags()
    profile.update(height=data.shape[1], width=data.shape[2], transform=transform)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.update_tags(**tags)
        for index, description in enumerate(descriptions, start=1):
            if description:
                dst.set_band_description(index, description)
            dst.update_tags(index, **band_tags[index - 1])
    return path


def clearing_scores(
    lost: NDArray[np.bool_],
    before_forest: NDArray[np.bool_],
    patches: Sequence[Patch],
    pixel_m2: float,
) -> dict[str, Any]:
    """Recall, precision and area error of detected loss per patch size.

    A detected-loss component (4-connected, as the polygons) belongs to a size
    when it touches a patch of that size; precision is the share of those
    components' area inside the patches; area error compares their area with
    the patches' area. False alarms are the loss pixels more than one pixel from
    every patch.
    """
    components, _ = ndimage.label(lost)
    truth_all = np.zeros(lost.shape, dtype=bool)
    per_size: dict[str, Any] = {}
    for target_ha in sorted({patch.target_ha for patch in patches}):
        truth = np.zeros(lost.shape, dtype=bool)
        found = 0
        for patch in (p for p in patches if p.target_ha == target_ha):
            block = patch.slices()
            truth[block] = True
            found += lost[block].mean() >= 0.5
        truth_all |= truth
        touching = np.setdiff1d(np.unique(components[truth & lost]), [0])
        detected = np.isin(components, touching)
        true_px, detected_px = int(truth.sum()), int(detected.sum())
        of_size = [patch for patch in patches if patch.target_ha == target_ha]
        count = len(of_size)
        per_size[f"{target_ha:g} ha"] = {
            "patches": count,
            "patch_shape_px": [of_size[0].height, of_size[0].width],
            "true_ha": true_px * pixel_m2 / 1e4,
            "before_forest_share": float(before_forest[truth].mean()),
            "patches_detected": f"{found}/{count}",
            "pixel_recall": float((lost & truth).sum() / true_px),
            "recall_where_before_forest": float(
                (lost & truth & before_forest).sum() / max(1, (truth & before_forest).sum())
            ),
            "precision": float((detected & truth).sum() / detected_px)
            if detected_px
            else float("nan"),
            "detected_ha": detected_px * pixel_m2 / 1e4,
            "area_error": detected_px / true_px - 1,
        }
    near = ndimage.binary_dilation(truth_all, iterations=1)
    return {
        "sizes": per_size,
        "loss_ha": float(lost.sum() * pixel_m2 / 1e4),
        "false_alarm_ha": float((lost & ~near).sum() * pixel_m2 / 1e4),
        "precision_all": float((lost & near).sum() / lost.sum()) if lost.any() else float("nan"),
    }


def clearings_scene(
    geoseg: Geoseg,
    name: str,
    scene: Path,
    labels_path: Path,
    rows: tuple[int, int] | None,
    classes: tuple[Sequence[int], Sequence[int]],
    counts: dict[float, int],
    bands: str | None,
    forest_option: bool,
    seed: int,
) -> dict[str, Any]:
    with rasterio.open(scene) as src:
        window = rows or (0, src.height)
        image = src.read(
            window=rasterio.windows.Window(0, window[0], src.width, window[1] - window[0])
        )
        pixel_m2 = abs(src.transform.a * src.transform.e)
    with rasterio.open(labels_path) as src:
        labels = src.read(1)[window[0] : window[1]]
    after, patches, notes = paste_clearings(
        image, labels, classes[0], classes[1], counts, pixel_m2, seed
    )
    before_path = write_like(scene, image, geoseg.work_dir / f"{name}_before_image.tif", window)
    after_path = write_like(scene, after, geoseg.work_dir / f"{name}_after_image.tif", window)
    before_maps = geoseg.predict(before_path, f"{name}_before", bands)
    after_maps = geoseg.predict(after_path, f"{name}_after", bands)
    regions = extent_regions(before_maps[0], geoseg.work_dir / f"{name}_extent.gpkg", "scene")
    extra = ["--forest-classes", str(FOREST_CLASS)] if forest_option else []
    gpkg, stats, _ = geoseg.change(before_maps, after_maps, regions, f"{name}_change", extra)
    with rasterio.open(before_maps[0]) as src:
        before_forest = src.read(1) == FOREST_CLASS
        # a model reading finer scenes at its pixel size (forest: 10 m as 30 m block means)
        # maps on a coarser grid: its pixels are repeated onto the scene's to score the patches
        factor = round(abs(src.transform.a) / np.sqrt(pixel_m2))

    def on_scene(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
        fine = np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)
        return fine[: image.shape[1], : image.shape[2]]

    lost = on_scene(loss_pixels(gpkg, before_maps[0]))
    before_forest = on_scene(before_forest)
    scores = clearing_scores(lost, before_forest, patches, pixel_m2)
    for threshold in geoseg.sweep:
        option = ["--min-probability", f"{threshold:g}"]
        swept, _, _ = geoseg.change(
            before_maps, after_maps, regions, f"{name}_change_p{threshold:g}", [*extra, *option]
        )
        figures = clearing_scores(
            on_scene(loss_pixels(swept, before_maps[0])), before_forest, patches, pixel_m2
        )
        scores[f"sweep {threshold:g}"] = figures
        recalls = ", ".join(
            f"{size} {100 * size_figures['pixel_recall']:.0f}%"
            for size, size_figures in figures["sizes"].items()
        )
        print(
            f"    p >= {threshold:g}: pixel recall {recalls}; "
            f"false alarms {figures['false_alarm_ha']:.2f} ha"
        )
    scores["notes"] = notes
    scores["reported_deforestation_ha"] = region_row(stats, "scene")["deforestation_ha"]
    print(f"  {name}: {len(patches)} patches pasted; " + "; ".join(notes))
    print(
        "    size     n  shape   before-forest  detected  pixel-recall  "
        "(of before-forest)  precision  area-error"
    )
    for size, figures in scores["sizes"].items():
        print(
            f"    {size:7s} {figures['patches']:2d}  {figures['patch_shape_px'][0]:2d}x"
            f"{figures['patch_shape_px'][1]:<2d}  {100 * figures['before_forest_share']:11.1f}%  "
            f"{figures['patches_detected']:>8s}  {100 * figures['pixel_recall']:11.1f}%  "
            f"{100 * figures['recall_where_before_forest']:17.1f}%  "
            f"{100 * figures['precision']:8.1f}%  {100 * figures['area_error']:+9.1f}%"
        )
    print(
        f"    all loss {scores['loss_ha']:.2f} ha "
        f"(reported {scores['reported_deforestation_ha']:.2f} ha), "
        f"precision {100 * scores['precision_all']:.1f}%, "
        f"false alarms away from the patches {scores['false_alarm_ha']:.2f} ha"
    )
    return scores


def clearings(geoseg: Geoseg, forest_option: bool, seed: int) -> dict[str, Any]:
    print("\n== 4. Simulated clearings (real non-forest pixels pasted into forest)", flush=True)
    data = geoseg.data_dir
    return {
        "zion": clearings_scene(
            geoseg,
            "zion",
            data / ZION_SCENE,
            data / ZION_LABELS,
            ZION_TEST_ROWS,
            (ZION_FOREST, ZION_NON_FOREST),
            ZION_CLEARINGS,
            None,
            forest_option,
            seed,
        ),
        "slovenia": clearings_scene(
            geoseg,
            "slovenia_clearings",
            data / SLOVENIA / f"image_{SLOVENIA_DATES[0]}.tif",
            data / SLOVENIA / "labels.tif",
            None,
            (SLOVENIA_FOREST, SLOVENIA_NON_FOREST),
            SLOVENIA_CLEARINGS,
            SLOVENIA_BANDS,
            forest_option,
            seed,
        ),
    }


# ---------------------------------------------------------------- main


def default_data_dir(tree: Path) -> Path:
    if os.environ.get("GEOSEG_DATA_DIR"):
        return Path(os.environ["GEOSEG_DATA_DIR"])
    return (tree / ".." / "shared" / "data").resolve()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = Path(__file__).resolve().parent.parent
    parser.add_argument("--tree", type=Path, default=here, help="geoseg source tree to run")
    parser.add_argument("--python", default=sys.executable, help="interpreter for geoseg")
    parser.add_argument("--data-dir", type=Path, help="sample data (default: see module doc)")
    parser.add_argument("--work-dir", type=Path, help="keep outputs here (default: temporary)")
    parser.add_argument("--device", default="cpu", help="geoseg predict --device")
    parser.add_argument(
        "--no-forest-classes",
        action="store_true",
        help="do not pass --forest-classes 1 to change (the model's classes should do)",
    )
    parser.add_argument("--skip-clearings", action="store_true")
    parser.add_argument(
        "--sweep",
        default="",
        help="comma-separated --min-probability values to compare (e.g. 0.5,0.6,0.7,0.8)",
    )
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    args = parser.parse_args(argv)

    tree = args.tree.resolve()
    data_dir = (args.data_dir or default_data_dir(tree)).resolve()
    with tempfile.TemporaryDirectory(prefix="deforestation_checks_") as scratch:
        work_dir = (args.work_dir or Path(scratch)).resolve()
        work_dir.mkdir(parents=True, exist_ok=True)
        sweep = tuple(float(value) for value in args.sweep.split(",") if value.strip())
        geoseg = Geoseg(args.python, tree, data_dir, work_dir, args.device, sweep)
        print(f"tree {tree}\ndata {data_dir}\nwork {work_dir}\ndevice {args.device}", flush=True)
        forest_option = not args.no_forest_classes
        started = time.perf_counter()
        results: dict[str, Any] = {
            "tree": str(tree),
            "no_change_pairs": no_change_pairs(geoseg, forest_option),
            "chiapas": chiapas(geoseg),
            "guadeloupe": guadeloupe(geoseg),
        }
        if not args.skip_clearings:
            results["clearings"] = clearings(geoseg, forest_option, args.seed)
        results["commands"] = geoseg.commands
        results["total_seconds"] = round(time.perf_counter() - started, 1)
    print(f"\nall done in {results['total_seconds']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=_plain) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
