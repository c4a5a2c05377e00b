"""The cost of overlap and of each engine: whole ``geoseg predict`` commands compared.

With 512 px tiles and 64 px overlap every scene pixel is computed about 1.31
times (the tile stride is 448 px); larger tiles with the same overlap compute
less twice. For each ``TILE/OVERLAP`` of ``--geometries`` this script times the
whole ``geoseg predict`` command as the user waits for it (a subprocess, start
to exit: imports, cluster start, work, shutdown) on a scene mirrored from the
real Zion Landsat-8 scene, and reports:

- the tile pixels computed per scene pixel (the geometry's redundancy),
- wall seconds and scene throughput (MP/s of the scene's own pixels),
- the label agreement with the first configuration (the reference, 512/64),

for every engine and precision of ``--engines`` (``ENGINE:PRECISION``, e.g.
``torch:auto`` today's default, ``auto:auto``, ``torch:fp32``) with every
geometry, in rounds that alternate the configurations, so that a drifting machine spreads
over all of them alike. Allocator settings are those ``geoseg predict`` gives
its workers (``workflows.cluster.WORKER_ENV``, printed).

Usage::

    .venv/bin/python benchmarks/tile_geometry.py [--size 4096] [--rounds 2] \
        [--geometries 512/64,768/64,1024/64] [--model landcover-landsat] \
        [--engines torch:auto,auto:auto]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from bench_predict import mirrored_scene  # benchmarks/ is on sys.path when run as a script

from geoseg.predict.tiling import make_layout
from workflows.cluster import WORKER_ENV


def geometries(text: str) -> list[tuple[int, int]]:
    """``512/64,768/64`` as ``[(512, 64), (768, 64)]``."""
    pairs = []
    for item in text.split(","):
        tile, overlap = item.split("/")
        pairs.append((int(tile), int(overlap)))
    return pairs


def redundancy(size: int, tile: int, overlap: int) -> float:
    """Tile pixels computed per scene pixel for a ``size`` x ``size`` scene."""
    layout = make_layout(size, size, tile, overlap)
    return layout.count * tile * tile / (size * size)


Config = tuple[str, str, int, int]
"""engine, precision, tile, overlap"""


def predict_command(scene: Path, out: Path, model: str, config: Config) -> float:
    """Wall seconds of one whole ``geoseg predict`` command."""
    engine, precision, tile, overlap = config
    command = [
        sys.executable,
        "-m",
        "geoseg",
        "-q",
        "predict",
        str(scene),
        "--model",
        model,
        "--out",
        str(out),
        "--tile",
        str(tile),
        "--overlap",
        str(overlap),
        "--engine",
        engine,
        "--precision",
        precision,
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return time.perf_counter() - start


def agreement(reference: Path, other: Path) -> float:
    """Share of valid pixels where two label rasters agree."""
    with rasterio.open(reference) as a, rasterio.open(other) as b:
        first, second = a.read(1), b.read(1)
        valid = (first != a.nodata) & (second != b.nodata)
    return float(np.mean(first[valid] == second[valid]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="scene side in pixels")
    parser.add_argument("--geometries", default="512/64,768/64,1024/64")
    parser.add_argument("--model", default="landcover-landsat")
    parser.add_argument("--engines", default="auto:auto", help="ENGINE:PRECISION,...")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    engines = [tuple(item.split(":")) for item in args.engines.split(",")]
    configs: list[Config] = [
        (engine, precision, tile, overlap)
        for engine, precision in engines
        for tile, overlap in geometries(args.geometries)
    ]
    print(f"worker allocator settings: {WORKER_ENV}")
    print(f"model {args.model}; machine load average {os.getloadavg()[0]:.2f} at the start")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        scene = mirrored_scene(work / f"zion_{args.size}.tif", args.size)
        seconds: dict[Config, list[float]] = {config: [] for config in configs}
        outputs = {config: work / f"labels_{'_'.join(map(str, config))}.tif" for config in configs}
        for round_index in range(args.rounds):
            order = configs if round_index % 2 == 0 else configs[::-1]
            for config in order:
                taken = predict_command(scene, outputs[config], args.model, config)
                seconds[config].append(taken)
                print(f"round {round_index + 1}: {config} {taken:.1f} s", flush=True)
        scene_mp = args.size * args.size / 1e6
        print()
        print(f"scene {args.size} x {args.size} px ({scene_mp:.1f} MP), {args.rounds} rounds")
        print(
            "| engine:precision | tile/overlap | tile px per scene px | wall s (runs) | "
            "scene MP/s | speed-up | agreement |"
        )
        print("|---|---|---|---|---|---|---|")
        reference = configs[0]
        base = statistics.median(seconds[reference])
        for config in configs:
            engine, precision, tile, overlap = config
            runs = seconds[config]
            median = statistics.median(runs)
            print(
                f"| {engine}:{precision} | {tile}/{overlap} | "
                f"{redundancy(args.size, tile, overlap):.3f} | "
                f"{median:.1f} ({', '.join(f'{value:.1f}' for value in runs)}) | "
                f"{scene_mp / median:.2f} | {base / median:.2f}x | "
                f"{agreement(outputs[reference], outputs[config]):.4%} |"
            )


if __name__ == "__main__":
    main()
