"""Chunked, seam-free vectorize vs whole-raster polygonization, side by side.

Builds a SIZE x SIZE label raster by mirroring the real Guadeloupe forest mask
(written window by window as a tiled, compressed GeoTIFF: never whole in
memory), then runs in fresh subprocesses, one after the other:

- ``whole``: read the whole raster, ``rasterio.features.shapes`` over all of it
  (GDAL's polygonizer; its GeoJSON mappings become shapely polygons in two
  vectorized calls), geoseg's attribute table, one GeoPackage write with
  geoseg's writer (``write_layers``: Arrow rows through ``pyogrio.write_arrow``
  in one call, spatial index bulk-built once), the same writer the chunked
  runs use;
- ``chunked`` with 1 and with 2 Dask worker processes: ``vectorize_file``
  (workers polygonize chunks in task order with geoseg's own tracer,
  :mod:`geoseg.vector.tracing`, which gives GDAL's polygons as flat arrays, and build
  the rows of polygons that touch no seam, a worker merges the seam pieces,
  the client streams all rows into the GeoPackage in one pass).

For each it prints the wall time, the throughput ratio against ``whole``, the
peak RSS of the whole process tree (the run and its Dask workers), sampled
every 50 ms with psutil in a thread, and the CPU seconds of the tree and of the
run's own process (``client_cpu_s``: the Dask client, scheduler and writer),
all including imports and cluster start-up. ``timed_cpu_s`` counts only the
timed section (the client process plus every worker; ``timed_client_cpu_s`` the
client process alone): the figures to compare on a busy machine. Allocator:
glibc malloc; Dask workers start with ``workflows.cluster.WORKER_ENV`` (mmap
disabled, trim threshold 16 GiB; since commit f3af157, before which those
settings never reached glibc), the parent and ``whole`` use glibc defaults.
Dask's worker profiler is on (Dask's default).

Usage: ``python benchmarks/bench_vectorize.py [--size 20000] [--chunk-size 4096]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import rasterio
from rasterio.windows import Window

SOURCE = "guadeloupe_forest/forest_t1.tif"


def mirrored_indexes(start: int, stop: int, length: int) -> np.ndarray:
    positions = np.arange(start, stop) % (2 * length)
    return np.where(positions < length, positions, 2 * length - 1 - positions)


def build_raster(path: Path, size: int) -> None:
    from geoseg.catalog.datadir import data_file

    with rasterio.open(data_file(SOURCE)) as source:
        mask = source.read(1)
        profile = source.profile
    height, width = mask.shape
    profile.update(
        height=size,
        width=size,
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        predictor=1,
    )
    step = 2048
    with rasterio.open(path, "w", **profile) as target:
        for row in range(0, size, step):
            rows = mirrored_indexes(row, min(row + step, size), height)
            for col in range(0, size, step):
                cols = mirrored_indexes(col, min(col + step, size), width)
                block = mask[np.ix_(rows, cols)]
                target.write(block, 1, window=Window(col, row, block.shape[1], block.shape[0]))


def geojson_polygons(geometries: list[Any]) -> np.ndarray:
    """Shapely polygons from GeoJSON polygon mappings, built in two vectorized calls."""
    import shapely

    ring_sizes: list[int] = []
    ring_counts: list[int] = []
    flat: list[tuple[float, float]] = []
    for geometry in geometries:
        rings = geometry["coordinates"]
        ring_counts.append(len(rings))
        for ring in rings:
            ring_sizes.append(len(ring))
            flat.extend(ring)
    if not ring_counts:
        return np.empty(0, dtype=object)
    rings_array = shapely.linearrings(
        np.asarray(flat, dtype=np.float64),
        indices=np.repeat(np.arange(len(ring_sizes)), ring_sizes),
    )
    polygons = shapely.polygons(
        rings_array, indices=np.repeat(np.arange(len(ring_counts)), ring_counts)
    )
    return np.asarray(polygons, dtype=object)


def gdal_polygons(labels: np.ndarray, mask: np.ndarray) -> Any:
    """``rasterio.features.shapes`` (4-connectivity) as geoseg ``PolygonPieces``.

    GeoJSON mappings are converted 20,000 at a time, so they never pile up.
    """
    from rasterio.features import shapes

    from geoseg.vector.polygonize import PolygonPieces

    batches: list[np.ndarray] = []
    geometries: list[Any] = []
    values: list[float] = []
    for geometry, value in shapes(labels, mask=mask, connectivity=4):
        geometries.append(geometry)
        values.append(value)
        if len(geometries) == 20_000:
            batches.append(geojson_polygons(geometries))
            geometries = []
    batches.append(geojson_polygons(geometries))
    return PolygonPieces(np.concatenate(batches), np.asarray(values, dtype=np.uint8))


def run_whole(labels: Path, out: Path) -> dict[str, float]:
    from geoseg.io.raster import read_info, read_valid_mask, read_window
    from geoseg.io.vector import write_layers
    from geoseg.vector.polygonize import polygon_mask
    from geoseg.vector.polygons import polygon_table

    start = time.perf_counter()
    cpu_start = time.process_time()
    grid = read_info(labels).grid
    pixels = read_window(labels, grid.full_window, bands=[1])[0]
    valid = read_valid_mask(labels, grid.full_window)
    pieces = gdal_polygons(pixels, polygon_mask(pixels, valid))
    del pixels, valid
    polygonized = time.perf_counter()
    table = polygon_table(pieces, grid, provenance={"source": str(labels)})
    write_layers(out, {"labels": table})
    return {
        "seconds": time.perf_counter() - start,
        "timed_cpu_s": time.process_time() - cpu_start,
        "polygonize_s": polygonized - start,
        "polygons": float(len(table)),
    }


def process_cpu_seconds() -> float:
    """User + system CPU seconds of the calling process (run on each Dask worker)."""
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def run_chunked(labels: Path, out: Path, workers: int, chunk_size: int) -> dict[str, float]:
    from workflows.cluster import local_client
    from workflows.vectorize import vectorize_file

    started = time.perf_counter()
    with local_client(n_workers=workers) as client:
        client.wait_for_workers(workers)
        workers_before = client.run(process_cpu_seconds)
        cpu_start = process_cpu_seconds()
        start = time.perf_counter()
        counts = vectorize_file(labels, out, layer="labels", chunk_size=chunk_size, client=client)
        seconds = time.perf_counter() - start
        client_cpu = process_cpu_seconds() - cpu_start
        workers_after = client.run(process_cpu_seconds)
    worker_cpu = sum(workers_after[name] - workers_before[name] for name in workers_after)
    return {
        "seconds": seconds,
        "timed_cpu_s": client_cpu + worker_cpu,
        "timed_client_cpu_s": client_cpu,
        "cluster_start_s": start - started,
        "polygons": float(sum(counts.values())),
    }


def tree_rss(process: psutil.Process, cpu_seconds: dict[int, float], peaks: dict[int, int]) -> int:
    """RSS of ``process`` and its descendants; records each one's CPU seconds and peak."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            with member.oneshot():
                rss = member.memory_info().rss
                times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += rss
        cpu_seconds[member.pid] = times.user + times.system
        peaks[member.pid] = max(peaks.get(member.pid, 0), rss)
    return total


def measure(arguments: list[str]) -> dict[str, Any]:
    child = subprocess.Popen(
        [sys.executable, __file__, *arguments], stdout=subprocess.PIPE, text=True
    )
    process = psutil.Process(child.pid)
    peak = 0
    cpu_seconds: dict[int, float] = {}
    peaks: dict[int, int] = {}
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, tree_rss(process, cpu_seconds, peaks))
            except psutil.NoSuchProcess:
                return
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = child.communicate()
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"benchmark run {arguments} failed with status {child.returncode}")
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_gib"] = peak / 2**30
    result["cpu_s"] = sum(cpu_seconds.values())
    result["client_cpu_s"] = cpu_seconds.get(child.pid, 0.0)
    # per-process peaks, largest first: the run itself (client) is the first pid
    result["process_peaks_gib"] = [
        round(peaks[pid] / 2**30, 2) for pid in sorted(peaks, key=lambda pid: -peaks[pid])
    ][:4]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000, help="raster side in pixels")
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--run", choices=["whole", "chunked"], help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--labels", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.run == "whole":
        print(json.dumps(run_whole(arguments.labels, arguments.out)))
        return
    if arguments.run == "chunked":
        result = run_chunked(
            arguments.labels, arguments.out, arguments.workers, arguments.chunk_size
        )
        print(json.dumps(result))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="bench_vectorize_") as folder:
        labels = Path(folder) / "labels.tif"
        start = time.perf_counter()
        build_raster(labels, arguments.size)
        print(
            f"raster: {arguments.size} x {arguments.size} px mirrored from {SOURCE}, "
            f"{labels.stat().st_size / 2**20:.1f} MiB on disk, built in "
            f"{time.perf_counter() - start:.1f} s; chunk size {arguments.chunk_size}; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
        )
        runs = {
            "whole raster": ["--run", "whole"],
            "chunked, 1 worker": ["--run", "chunked", "--workers", "1"],
            "chunked, 2 workers": ["--run", "chunked", "--workers", "2"],
        }
        results = {}
        for name, extra in runs.items():
            out = Path(folder) / f"{name.replace(' ', '_').replace(',', '')}.gpkg"
            results[name] = measure(
                [
                    *extra,
                    "--labels",
                    str(labels),
                    "--out",
                    str(out),
                    "--chunk-size",
                    str(arguments.chunk_size),
                ]
            )
            out.unlink(missing_ok=True)
        baseline = results["whole raster"]
        pixels = arguments.size**2
        print(
            f"{'run':<20} {'seconds':>8} {'MP/s':>7} {'ratio':>6} {'peak RSS GiB':>13} "
            f"{'CPU s (tree)':>12} polygons"
        )
        for name, result in results.items():
            print(
                f"{name:<20} {result['seconds']:8.1f} {pixels / 1e6 / result['seconds']:7.2f} "
                f"{baseline['seconds'] / result['seconds']:5.2f}x {result['peak_rss_gib']:13.2f} "
                f"{result['cpu_s']:12.1f} {int(result['polygons'])}"
            )
        for name, result in results.items():
            extra = {
                key: round(value, 2)
                for key, value in result.items()
                if key.endswith("_s") and key != "cpu_s"
            }
            extra["largest process peaks GiB"] = result["process_peaks_gib"]
            if extra:
                print(f"  {name}: {extra}")
        print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
