"""Benchmark the whole command, start to exit, as the user waits for it.

For each scene size, in one sequence of runs, with the same seeded U-Net
(resnet18 encoder, 4 bands, 8 classes; speed does not depend on the weights),
fp32, 512 px windows with 64 px overlap, batches of 8:

1. **bare forward passes**: one process with 2 torch threads runs the model
   over every tile of geoseg's plan of the scene, inputs prepared untimed;
   the figure is the sum of the forward passes only (the floor of any tool);
2. **pytorch-toolbelt, whole command**: a process that reads the scene,
   scales it, cuts it with ``ImageSlicer``, runs the model (2 threads), blends
   with ``TileMerger`` (pyramid weights) and writes the label GeoTIFF, timed
   from its start to its exit. pytorch-toolbelt is NOT a geoseg dependency:
   install it (and OpenCV, which it imports) apart, e.g.
   ``pip install --target /tmp/toolbelt-lib --no-deps pytorch-toolbelt
   opencv-python-headless``, and pass ``--toolbelt-path /tmp/toolbelt-lib``
   (skipped with a note when it cannot be imported);
3. **``geoseg predict``, whole command**: ``python -m geoseg predict`` timed
   from its start to its exit, with the phases it prints (``timings:``
   line): start-up (interpreter, imports, options), the local cluster's start
   (in the background) and how long the command waited for it, the work
   (validation, model, plan, prediction, COG) and the cluster's shutdown;
   ``exit`` is what remains of the wall time (the process ending).

Each tool's throughput is the scene's own pixels over its time; "of bare" is
the bare forward time over the tool's time (the issue's target: at least
0.85 for geoseg). Scenes are mirrored from the real Zion scene
(``bench_predict.mirrored_scene``). The allocator settings are printed: geoseg's
workers start with ``workflows.cluster.WORKER_ENV``; the toolbelt and bare
processes with this process's environment, or with the same ``MALLOC_*``
settings under ``--same-allocator``.

Usage (on a quiet machine; the default sizes take tens of minutes)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_command.py --toolbelt-path /tmp/toolbelt-lib
    PYTHONPATH=. .venv/bin/python benchmarks/bench_command.py --sizes 1024 --runs 1  # smoke
    # peak memory of the whole command against the scene size, shipped model, default engine:
    PYTHONPATH=. .venv/bin/python benchmarks/bench_command.py --tools geoseg --runs 1 \
        --sizes 4096,8192,16384 --model landcover-landsat --precision auto

Every row gives the peak RSS of the command's process tree (its Dask workers
included), sampled every 50 ms.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TILE, OVERLAP, BATCH, CLASSES, THREADS = 512, 64, 8, 8, 2
MALLOC_NAMES = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")


def unet_resnet18_model(directory: Path) -> Path:
    """Write the seeded U-Net-resnet18 model directory (random weights, seed 0)."""
    from bench_predict import seeded_model

    return seeded_model(
        directory,
        TILE,
        OVERLAP,
        name="bench-unet-resnet18",
        architecture="unet",
        encoder="resnet18",
    )


# ---------------------------------------------------------------- child processes


def toolbelt_command(scene: Path, model: Path, out: Path) -> None:
    """The pytorch-toolbelt command: read, scale, slice, forward, merge, write."""
    import numpy as np
    import rasterio
    import torch
    from pytorch_toolbelt.inference.tiles import ImageSlicer, TileMerger

    from geoseg.models.loading import load_model

    torch.set_num_threads(THREADS)
    network = load_model(model).module
    with rasterio.open(scene) as source:
        bands = source.read().astype(np.float32)
        profile = source.profile
    low, high = np.percentile(bands[:, ::16, ::16], [2, 98], axis=(1, 2))
    scaled = (bands - low[:, None, None]) / (high - low)[:, None, None]
    image = np.moveaxis(scaled.astype(np.float32), 0, -1)
    del bands, scaled
    slicer = ImageSlicer(image.shape, tile_size=TILE, tile_step=TILE - OVERLAP, weight="pyramid")
    merger = TileMerger(slicer.target_shape, CLASSES, slicer.weight)
    tiles, coords = [], []

    def run_batch() -> None:
        batch = torch.from_numpy(np.ascontiguousarray(np.stack(tiles).transpose(0, 3, 1, 2)))
        with torch.inference_mode():
            merger.integrate_batch(torch.softmax(network(batch), dim=1), coords)
        tiles.clear()
        coords.clear()

    for tile, crop in slicer.iter_split(image):
        tiles.append(tile)
        coords.append(crop)
        if len(tiles) == BATCH:
            run_batch()
    if tiles:
        run_batch()
    merged = merger.merge().argmax(dim=0).to(torch.uint8).numpy()
    labels = slicer.crop_to_orignal_size(merged[:, :, None])[:, :, 0] + 1
    profile.update(count=1, dtype="uint8", nodata=None, compress="deflate", tiled=True)
    with rasterio.open(out, "w", **profile) as target:
        target.write(labels, 1)


def bare_command(scene: Path, model: Path, work: Path, engine: str = "torch") -> None:
    """Print the seconds of the forward passes over geoseg's tiles of ``scene`` (untimed inputs)."""
    import torch
    from bench_predict import bare_forward_seconds, bench_plan

    torch.set_num_threads(THREADS)
    plan = bench_plan(scene, model, work, _plan_arguments(engine))
    bare_forward_seconds(plan, plan.batches[0])  # warm-up, as a first task loads the model
    seconds = sum(bare_forward_seconds(plan, batch) for batch in plan.batches)
    print(f"forward_s {seconds:.3f} tiles {plan.layout.count}")


def _plan_arguments(engine: str) -> argparse.Namespace:
    """The settings ``bench_predict.bench_plan`` reads (fp32 on the CPU, this benchmark's tiles)."""
    from geoseg.predict.settings import InferenceSettings

    return argparse.Namespace(
        tile=TILE,
        overlap=OVERLAP,
        batch_size=BATCH,
        chunk_size=InferenceSettings().chunk_size,
        device="cpu",
        precision="fp32",
        engine=engine,
    )


# ---------------------------------------------------------------- the benchmark


def child_environment(args: argparse.Namespace, *, toolbelt: bool = False) -> dict[str, str]:
    """The environment of a child process (PYTHONPATH; allocator under --same-allocator)."""
    from workflows.cluster import WORKER_ENV

    paths = [str(ROOT), str(ROOT / "benchmarks")]
    if toolbelt and args.toolbelt_path:
        paths.append(args.toolbelt_path)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "HF_HUB_OFFLINE": "1"}
    if args.same_allocator:
        environment.update({name: WORKER_ENV[name] for name in MALLOC_NAMES})
    return environment


PEAK_RSS: list[float] = []
"""Peak RSS (GiB) of the process tree of each :func:`timed` command, in order."""


def timed(command: list[str], environment: dict[str, str]) -> tuple[float, str, str]:
    """Wall seconds of ``command`` from its start to its exit, and its stdout and stderr.

    The peak RSS of the command's process tree (its workers included, not
    this process) is appended to :data:`PEAK_RSS`.
    """
    from bench_predict import PeakMemory

    start = time.perf_counter()
    child = subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with PeakMemory(pid=child.pid) as memory:
        stdout, stderr = child.communicate()
    seconds = time.perf_counter() - start
    PEAK_RSS.append(memory.peak / 2**30)
    if child.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed: {stderr[-2000:]}")
    return seconds, stdout, stderr


def geoseg_phases(stderr: str, wall: float) -> dict[str, float]:
    """The phases of ``geoseg predict``'s ``timings:`` line, and ``exit`` (the rest of ``wall``)."""
    line = next(text for text in stderr.splitlines() if text.startswith("timings: "))
    phases = {
        name: float(value)
        for name, value in re.findall(r"([\w-]+) (\d+\.\d+) s", line.removeprefix("timings: "))
    }
    hidden = phases.get("cluster-start", 0.0) - phases.get("cluster-wait", 0.0)
    counted = sum(phases.values()) - phases.get("cluster-start", 0.0)
    phases["exit"] = max(0.0, wall - counted)
    phases["cluster-start hidden"] = max(0.0, hidden)
    return phases


def toolbelt_available(args: argparse.Namespace) -> str | None:
    """None when pytorch-toolbelt imports in its child environment, else why not."""
    probe = "import pytorch_toolbelt.inference.tiles"
    completed = subprocess.run(
        [sys.executable, "-c", probe],
        env=child_environment(args, toolbelt=True),
        capture_output=True,
        text=True,
    )
    if completed.returncode == 0:
        return None
    return (completed.stderr.strip().splitlines() or ["import failed"])[-1]


def run_size(args: argparse.Namespace, scene: Path, model: Path, work: Path, size: int) -> None:
    """Every tool on one scene, ``--runs`` times in turn; print a row per run."""
    me = [sys.executable, str(Path(__file__).resolve())]
    megapixels = size * size / 1e6
    missing_toolbelt = toolbelt_available(args)
    if missing_toolbelt:
        print(f"  pytorch-toolbelt skipped: {missing_toolbelt}")
    tools = set(args.tools.split(","))
    for run in range(1, args.runs + 1):
        rows: list[tuple[str, float, str]] = []
        bare = float("nan")
        if "bare" in tools:
            _, out, _ = timed(
                [*me, "--child", "bare", str(scene), str(model), str(work), args.engine],
                child_environment(args),
            )
            bare = float(out.split()[1])
            rows.append(
                (f"bare forward, {args.engine} (1 process, 2 threads)", bare, "", PEAK_RSS[-1])
            )
        if "toolbelt" in tools and not missing_toolbelt:
            target = work / f"toolbelt_{size}.tif"
            seconds, _, _ = timed(
                [*me, "--child", "toolbelt", str(scene), str(model), str(target)],
                child_environment(args, toolbelt=True),
            )
            rows.append(("pytorch-toolbelt, whole command", seconds, "", PEAK_RSS[-1]))
        if "geoseg" in tools:
            target = work / f"geoseg_{size}.tif"
            target.unlink(missing_ok=True)
            command = [
                *[sys.executable, "-m", "geoseg", "predict", str(scene), "--model", str(model)],
                *["--out", str(target), "--precision", args.precision, "--device", "cpu"],
                *["--engine", args.engine],
                *["--tile", str(TILE), "--overlap", str(OVERLAP), "--batch-size", str(BATCH)],
            ]
            seconds, _, stderr = timed(command, child_environment(args))
            phases = geoseg_phases(stderr, seconds)
            text = ", ".join(f"{name} {value:.1f}" for name, value in phases.items())
            tool = f"geoseg predict --engine {args.engine} --precision {args.precision}"
            rows.append((f"{tool}, whole command", seconds, text, PEAK_RSS[-1]))
        for tool, seconds, note, peak in rows:
            print(
                f"| {size} | {run} | {tool} | {seconds:.1f} | {megapixels / seconds:.3f} | "
                f"{bare / seconds:.2f} | {peak:.2f} | {note} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="4096,8192", help="scene sides in pixels")
    parser.add_argument("--runs", type=int, default=2, help="runs of every tool per size")
    parser.add_argument("--toolbelt-path", default="", help="folder where pytorch-toolbelt lies")
    parser.add_argument(
        "--same-allocator",
        action="store_true",
        help="start the toolbelt and bare processes with geoseg's workers' MALLOC_* settings",
    )
    parser.add_argument(
        "--engine",
        default="torch",
        help="geoseg's engine, for its command and the bare forward (torch: the same network "
        "as pytorch-toolbelt's)",
    )
    parser.add_argument(
        "--tools", default="bare,toolbelt,geoseg", help="which of bare,toolbelt,geoseg to run"
    )
    parser.add_argument(
        "--model",
        default="",
        help="geoseg's model (shipped name or directory) [default: the seeded U-Net-resnet18]",
    )
    parser.add_argument("--precision", default="fp32", help="geoseg's --precision")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        tool, *paths = args.child
        commands: dict[str, Any] = {"toolbelt": toolbelt_command, "bare": bare_command}
        commands[tool](*(Path(path) for path in paths[:3]), *paths[3:])
        return

    from bench_predict import mirrored_scene

    from workflows.cluster import WORKER_ENV

    sizes = [int(text) for text in args.sizes.split(",") if text]
    print(f"date {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"load average {os.getloadavg()}, cpus {os.cpu_count()}")
    print(
        f"model: {args.model or f'seeded U-Net resnet18, {CLASSES} classes'}; tile {TILE} "
        f"overlap {OVERLAP} batch {BATCH}; geoseg --engine {args.engine} --precision "
        f"{args.precision}; bare forward fp32"
    )
    print(f"geoseg workers' allocator: {WORKER_ENV}")
    others = child_environment(args)
    print(
        "toolbelt and bare processes' allocator: "
        + ", ".join(f"{name}={others.get(name, 'unset')}" for name in MALLOC_NAMES)
    )
    print("| scene px | run | tool | seconds | MP/s | of bare | peak RSS GiB | geoseg phases (s) |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="geoseg-bench-command-") as folder:
        work = Path(folder)
        model = (
            Path(args.model) if args.model else unet_resnet18_model(work / "bench-unet-resnet18")
        )
        for size in sizes:
            scene = mirrored_scene(work / f"mirror_{size}.tif", size)
            run_size(args, scene, model, work, size)
            scene.unlink()
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
