"""Benchmark ``geoseg predict``: model-bound throughput and memory against scene size.

Measured side by side in one run, on the same cluster and the same tiles:

1. bare model forward throughput (MP/s of tile pixels): the scene's tiles,
   already read and scaled, run through the model on the workers, timing only
   the forward passes;
2. pipeline throughput: the same tile pixels divided by the wall time of the
   whole ``predict_file`` run (reads, scaling, forward, blending, chunk writes,
   COG assembly), model already loaded;
3. their ratio (target >= 0.90 on CPU), on the ``--ratio-size`` scene, from
   ``--pairs`` pipeline runs alternating with bare-forward runs (each pipeline
   run against the mean of the bare runs before and after it); default scene
   8192 px: with the shipped 512 px tiles a 4096 px scene has only 11 batches
   of 8 tiles, so two workers idle for a sizeable share of it on granularity
   alone);
4. peak resident memory of the whole process tree (this process, nannies,
   workers; psutil, sampled every 50 ms in a thread) per scene size, each size
   on a fresh cluster (target: growth from 4k to 16k <= 10%);
5. bf16 vs fp32 autocast on the real Zion scene: label agreement and speed;
6. with ``--engines``: items 1-4 for each engine and precision listed
   (``torch:fp32,torch:bf16,onnxruntime:fp32,onnxruntime:int8``), each on a
   fresh cluster, plus scene throughput (MP/s of the scene's own pixels);
7. with ``--engine-batch``: one batch of 512 px Zion tiles through each engine
   and precision side by side in this process (ms per tile, label agreement with
   torch fp32), a quick indicative ratio;
8. with ``--phases``: the CPU time per tile of each step of the prediction, the
   model's forward included, measured in ONE worker process (thread CPU time,
   so the figures hold on a loaded machine): the tasks' bodies are called
   directly in order on the first scene size, then the label COG is assembled.

Scenes of N x N px are built by mirroring the real Zion Landsat-8 scene and
written tiled and compressed to a temporary folder. Workers start with the
allocator settings of ``workflows.cluster.WORKER_ENV`` (printed), set before
the worker processes are spawned (see :func:`cluster`).

On a GPU (``--device cuda``) use ``--workers 1``: the bare forward time is the
sum of the batches' forward passes divided by the workers, which holds only
where each worker has a processor of its own (``make gpu-check`` runs it so).

Usage::

    .venv/bin/python benchmarks/bench_predict.py [--sizes 4096,8192,16384] [--model NAME|DIR]
    .venv/bin/python benchmarks/bench_predict.py --sizes 4096 --phases --skip-precision
    .venv/bin/python benchmarks/bench_predict.py --sizes 4096,8192,16384 \
        --engines torch:fp32,torch:bf16,onnxruntime:fp32,onnxruntime:int8 --engine-batch
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import rasterio
import torch
from distributed import Client

from geoseg.catalog.datadir import data_file
from geoseg.errors import GeosegError
from geoseg.io.checkpoint import read_card
from geoseg.models.loading import resolve_model_dir, shipped_models
from geoseg.predict.forward import batch_inputs, model_probabilities
from geoseg.predict.inference import cached_model, device_support, forward_probabilities
from geoseg.predict.placement import place_inference
from geoseg.predict.plan import PredictPlan, make_plan
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from geoseg.predict.sources import FileSource
from workflows.cluster import WORKER_ENV, local_client
from workflows.predict import predict_file

ZION = "zion/zion_landsat8_20150818_b2345.tif"


class PeakMemory:
    """Peak RSS of this process and all its descendants, sampled in a thread."""

    def __init__(self, interval: float = 0.05, pid: int | None = None) -> None:
        self.interval = interval
        self.pid = pid  # whose process tree to sample (default this process's)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        try:
            root = psutil.Process(self.pid or os.getpid())
        except psutil.Error:
            return 0
        total = 0
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        for process in tree:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def mirrored_scene(path: Path, size: int) -> Path:
    """Write a ``size`` x ``size`` mirror of Zion, tiled and compressed, block row by row."""
    with rasterio.open(data_file(ZION)) as zion:
        data = zion.read()
        profile = zion.profile
        descriptions = zion.descriptions
    height, width = data.shape[1:]

    def mirror(length: int, period: int) -> np.ndarray:
        position = np.arange(length) % (2 * period)
        return np.where(position < period, position, 2 * period - 1 - position)

    rows, cols = mirror(size, height), mirror(size, width)
    profile.update(height=size, width=size, tiled=True, blockxsize=256, blockysize=256)
    profile.update(compress="deflate", bigtiff="IF_SAFER")
    with rasterio.open(path, "w", **profile) as out:
        for start in range(0, size, 1024):
            stop = min(size, start + 1024)
            block = data[:, rows[start:stop]][:, :, cols]
            out.write(block, window=((start, stop), (0, size)))
        for band, text in enumerate(descriptions, start=1):
            out.set_band_description(band, text or "")
    return path


def install_forward_timer() -> None:
    """In a worker: accumulate the seconds spent in the model's forward passes.

    The total is kept on the ``geoseg.predict.forward`` module of the worker (functions of
    this script are shipped by value, so their own globals would not persist).
    """
    import geoseg.predict.forward as forward
    import geoseg.predict.onnx_runtime as onnx_runtime

    forward.bench_forward_seconds = 0.0  # type: ignore[attr-defined]

    def timer(original: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                forward.bench_forward_seconds += elapsed  # type: ignore[attr-defined]

        return timed

    forward.forward_probabilities = timer(forward.forward_probabilities)  # type: ignore[assignment]
    onnx_runtime.session_probabilities = timer(onnx_runtime.session_probabilities)  # type: ignore[assignment]


def take_forward_seconds() -> float:
    """In a worker: the accumulated forward seconds, then reset."""
    import geoseg.predict.forward as forward

    seconds = float(forward.bench_forward_seconds)  # type: ignore[attr-defined]
    forward.bench_forward_seconds = 0.0  # type: ignore[attr-defined]
    return seconds


def bare_forward_seconds(plan: PredictPlan, indexes: tuple[int, ...]) -> float:
    """Seconds of the forward pass alone for one batch (inputs prepared untimed)."""
    batch, _ = batch_inputs(plan, indexes)
    warm_model(plan)
    start = time.perf_counter()
    model_probabilities(plan, batch)
    return time.perf_counter() - start


def warm_model(plan: PredictPlan) -> None:
    """Load the plan's model (or build its ONNX Runtime session) in this process."""
    if plan.engine == "onnxruntime":
        from geoseg.predict.onnx_runtime import cached_session

        cached_session(plan.model, plan.precision)
    else:
        cached_model(plan.model)


def bare_forward(client: Client, plan: PredictPlan, args: argparse.Namespace) -> float:
    """Wall-equivalent seconds of the forward passes alone over all tiles of ``plan``."""
    futures = [client.submit(bare_forward_seconds, plan, b, pure=False) for b in plan.batches]
    return float(sum(client.gather(futures))) / args.workers


def seeded_model(directory: Path, tile: int, overlap: int, **fields: Any) -> Path:
    """Write a model directory with seeded random weights (seed 0) and return it.

    ``fields`` (name, architecture, encoder, options...) complete a card of
    the four Landsat bands, eight classes and 30 m pixels: the speed of a
    forward pass does not depend on the weights.
    """
    from geoseg.io.checkpoint import write_model_dir
    from geoseg.models.card import ModelCard
    from geoseg.models.loading import build_from_card

    card = ModelCard.model_validate(
        {
            "bands": [{"name": n} for n in ("blue", "green", "red", "nir")],
            "scaling": {"units": "digital numbers", "method": "scene_percentile"},
            "classes": [{"id": i, "name": f"class{i}", "color": "#808080"} for i in range(1, 9)],
            "pixel_size_m": 30.0,
            "tile_size": tile,
            "overlap": overlap,
            "weights_sha256": "0" * 64,
            **fields,
        }
    )
    torch.manual_seed(0)
    write_model_dir(directory, build_from_card(card).state_dict(), card)
    return directory


def random_model(directory: Path, tile: int, overlap: int) -> Path:
    """A seeded random model shaped like the default ``landcover-landsat`` (SegNet, 8 classes).

    Used when no model is shipped yet.
    """
    return seeded_model(
        directory,
        tile,
        overlap,
        name="bench-random-segnet",
        architecture="segnet",
        architecture_options={"widths": [12, 24, 48, 96], "convs": 2},
    )


def bench_settings(args: argparse.Namespace, precision: str) -> InferenceSettings:
    """The benchmark's inference settings, at ``precision``."""
    return InferenceSettings(
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        device=args.device,
        precision=precision,
        engine=args.engine,
    )


def bench_plan(scene: Path, model: str | Path, work: Path, args: argparse.Namespace) -> PredictPlan:
    """The plan ``predict_file`` makes for ``scene`` with the benchmark's settings."""
    card = read_card(resolve_model_dir(model))
    placement = place_inference(
        args.device,
        {"local": device_support()},
        where="this machine",
        precision=args.precision,
        cpu_bf16_agreement=card.cpu_bf16_agreement,
        engine=args.engine,
        onnx=card.onnx,
    )
    return make_plan(
        FileSource.open(scene),
        model,
        bench_settings(args, args.precision),
        placement,
        work_root=work,
        write_probabilities=False,
    )


def timed_predict(
    client: Client,
    scene: Path,
    model: str | Path,
    out: Path,
    args: argparse.Namespace,
    precision: str,
) -> float:
    """Seconds of one ``predict_file`` run with the benchmark's settings."""
    start = time.perf_counter()
    predict_file(
        scene,
        model,
        bench_settings(args, precision),
        PredictOutputs(out),
        client=client,
        progress=False,
    )
    return time.perf_counter() - start


def run_size(
    args: argparse.Namespace, scene: Path, model: str | Path, work: Path, first: bool
) -> None:
    size = int(scene.stem.split("_")[-1])
    out = work / f"labels_{size}.tif"
    with local_client(n_workers=args.workers) as client:
        plan = bench_plan(scene, model, work, args)
        client.run(warm_model, plan)  # warm: load the model once per worker
        client.run(install_forward_timer)
        tile_pixels = plan.layout.count * plan.layout.tile**2 / 1e6
        scene_pixels = size * size / 1e6

        def timed_pipeline() -> float:
            return timed_predict(client, scene, model, out, args, args.precision)

        with PeakMemory() as memory:
            pipeline = timed_pipeline()
        inside = sum(client.run(take_forward_seconds).values())
        line = (
            f"{size:>6} px  {plan.engine}/{plan.precision}  tiles {plan.layout.count:>5}  "
            f"{tile_pixels:8.1f} MP  pipeline {pipeline:7.1f} s = {tile_pixels / pipeline:6.3f} "
            f"MP/s of tile pixels, {scene_pixels / pipeline:6.3f} MP/s of scene pixels  "
            f"peak RSS (tree) {memory.peak / 2**30:6.2f} GiB\n"
            f"        share of worker time spent in the model's forward during the pipeline: "
            f"{inside / (pipeline * args.workers):5.3f}"
        )
        if first:
            # bare forward and pipeline alternate (F0 P1 F1 P2 F2 ...): each pipeline run is
            # compared with the mean of the bare runs just before and after it, so that speed
            # drifts of a shared machine (measured: +-8% between bare runs minutes apart)
            # cancel out instead of landing in one ratio
            bare = [bare_forward(client, plan, args)]
            ratios = []
            for run_number in range(1, args.pairs + 1):
                run = timed_pipeline()
                bare.append(bare_forward(client, plan, args))
                around = (bare[-2] + bare[-1]) / 2
                ratios.append(around / run)
                line += (
                    f"\n        pair {run_number}: bare forward {bare[-2]:6.1f} / "
                    f"{bare[-1]:6.1f} s, mean {tile_pixels / around:6.3f} MP/s; "
                    f"pipeline {run:6.1f} s = {tile_pixels / run:6.3f} MP/s; "
                    f"ratio pipeline/bare = {ratios[-1]:5.3f}"
                )
            line += (
                f"\n        ratio pipeline/bare: median {float(np.median(ratios)):5.3f}, "
                f"min {min(ratios):5.3f}, max {max(ratios):5.3f} over {len(ratios)} pairs"
            )
        print(line, flush=True)
        out.unlink(missing_ok=True)


PHASES = {
    "geoseg.predict.forward": (
        "model_probabilities",
        "normalize",
        "reflect_pad",
        "keep_tile",
        "labels_from_probabilities",
        "quantize_probabilities",
        "batch_inputs",
        "batch_probabilities",
        "fill_parts",
        "compute_batch",
        "forward_batch",
    ),
    "geoseg.predict.assemble": (
        "read_parts",
        "blend_window",
        "labels_from_probabilities",
        "quantize_probabilities",
        "write_chunk",
        "write_summary",
        "gather_tiles",
        "stitch_chunk",
        "assemble_chunk",
    ),
    "geoseg.predict.sources": ("read_window_masked",),
    "geoseg.io.cog": ("assemble_cog",),
}


def profile_phases(
    scene: Path, model: str | Path, work: Path, args: argparse.Namespace
) -> tuple[int, dict[str, float]]:
    """In a worker: CPU seconds of each prediction step (exclusive of the steps it calls).

    Runs every forward batch and every chunk of ``scene`` in this process, in
    the order the Dask graph would (a chunk right after the batches it needs,
    batch files deleted after their last chunk), then assembles the label COG.
    """
    import importlib
    from collections import Counter, defaultdict

    import geoseg.predict.assemble as assemble
    import geoseg.predict.forward as forward
    from geoseg.io.cog import OutputStyle
    from geoseg.io.workdir import batch_path, chunk_path, prepare_work_dir, recycle_tile_batch

    torch.set_num_threads(1)
    seconds: defaultdict[str, float] = defaultdict(float)
    running: list[str] = []

    def timed(name: str, function: Any) -> Any:
        def wrapper(*inner: Any, **kwargs: Any) -> Any:
            start = time.thread_time()
            running.append(name)
            try:
                return function(*inner, **kwargs)
            finally:
                running.pop()
                elapsed = time.thread_time() - start
                seconds[name] += elapsed
                if running:
                    seconds[running[-1]] -= elapsed

        return wrapper

    originals = []
    for module_name, names in PHASES.items():
        module = importlib.import_module(module_name)
        for name in names:
            originals.append((module, name, getattr(module, name)))
            setattr(module, name, timed(name, getattr(module, name)))
    try:
        plan = bench_plan(scene, model, work, args)
        cached_model(plan.model)
        batches = plan.batches
        users = Counter(number for chunk in plan.chunks for number in chunk.batches)
        prepare_work_dir(plan.work_dir, {})
        done: set[int] = set()
        for chunk in plan.chunks:
            for number in chunk.batches:
                if number not in done:
                    forward.forward_batch(plan, number, batches[number])
                    done.add(number)
            stored = [(batches[n], batch_path(plan.work_dir, n)) for n in chunk.batches]
            assemble.assemble_chunk(plan, chunk.window, stored)
            for number in chunk.batches:
                users[number] -= 1
                if users[number] == 0:
                    recycle_tile_batch(batch_path(plan.work_dir, number))
        style = OutputStyle(band_descriptions=("class",), nodata=255)
        chunks = [(c.window, chunk_path(plan.work_dir, c.window, "labels")) for c in plan.chunks]
        importlib.import_module("geoseg.io.cog").assemble_cog(
            work / "phases.tif", plan.source.grid, chunks, 1, style, work
        )
    finally:
        for module, name, function in originals:
            setattr(module, name, function)
    return plan.layout.count, dict(seconds)


def report_phases(args: argparse.Namespace, scene: Path, model: str | Path, work: Path) -> None:
    with local_client(n_workers=1) as client:
        tiles, seconds = client.submit(profile_phases, scene, model, work, args).result()
    forward = seconds.pop("model_probabilities")
    print(f"CPU ms per tile by step, one worker process, {tiles} tiles (exclusive times):")
    for name, value in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"  {name:28s} {1000 * value / tiles:6.2f}")
    other = sum(seconds.values())
    print(
        f"  outside the forward: {1000 * other / tiles:.2f} ms per tile; forward "
        f"{1000 * forward / tiles:.2f} ms per tile; model share {forward / (forward + other):.3f}"
    )


def compare_precision(args: argparse.Namespace, model: str | Path, work: Path) -> None:
    zion = data_file(ZION)
    labels = {}
    with local_client(n_workers=args.workers) as client:
        for precision in ("fp32", "bf16", "fp32", "bf16"):
            out = work / f"zion_{precision}.tif"
            seconds = timed_predict(client, zion, model, out, args, precision)
            with rasterio.open(out) as dataset:
                labels[precision] = dataset.read(1)
            print(f"  Zion {precision}: {seconds:6.1f} s (second run of each is warm)", flush=True)
    valid = labels["fp32"] != 255
    agreement = float((labels["fp32"][valid] == labels["bf16"][valid]).mean())
    values, counts = np.unique(labels["fp32"][valid], return_counts=True)
    pairs = zip(values, counts, strict=True)
    shares = ", ".join(f"{v}: {100 * c / valid.sum():.1f}%" for v, c in pairs)
    print(f"  fp32 class shares on Zion: {shares}")
    print(f"  bf16 vs fp32 label agreement on Zion: {100 * agreement:.3f}%")


ENGINES = "torch:fp32,torch:bf16,onnxruntime:fp32,onnxruntime:int8"
"""The engines and precisions compared by default."""


def engine_pairs(text: str) -> list[tuple[str, str]]:
    """``torch:fp32,onnxruntime:int8`` as ``[("torch", "fp32"), ("onnxruntime", "int8")]``."""
    pairs = []
    for item in text.split(","):
        engine, _, precision = item.partition(":")
        pairs.append((engine, precision or "fp32"))
    return pairs


def engine_batch(args: argparse.Namespace, model: str | Path, work: Path) -> None:
    """One batch of Zion tiles through each engine and precision, side by side in this process.

    Inputs are read and scaled once; each engine runs the batch once to warm
    up, then ``--repeats`` times (min and median reported, ms per tile), and
    its labels are compared with torch fp32's. Indicative only: one batch.
    """
    from geoseg.predict.onnx_runtime import cached_session, session_probabilities

    torch.set_num_threads(args.threads)
    settings = argparse.Namespace(**{**vars(args), "engine": "torch", "precision": "fp32"})
    plan = bench_plan(data_file(ZION), model, work, settings)
    indexes = max(plan.batches, key=len)
    inputs, valid = batch_inputs(plan, indexes)
    tiles, tile = len(indexes), plan.layout.tile
    print(
        f"one batch of {tiles} Zion tiles of {tile} px in one process, {args.threads} thread(s), "
        f"load average before {os.getloadavg()}"
    )
    reference = None
    timings = {}
    for engine, precision in engine_pairs(args.engines):
        if engine == "onnxruntime":
            try:
                session = cached_session(plan.model, precision)
            except GeosegError as error:
                print(f"  {engine:12s} {precision:5s} not run: {error}")
                continue

            def run(session: Any = session) -> Any:
                return session_probabilities(session, inputs, "cpu")
        else:
            loaded = cached_model(plan.model)

            def run(loaded: Any = loaded, precision: str = precision) -> Any:
                return forward_probabilities(loaded, inputs, "cpu", precision)  # type: ignore[arg-type]

        labels = run().argmax(axis=1)
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - start)
        if reference is None:
            reference = labels
        agreement = float((labels == reference)[valid].mean())
        per_tile = 1000 * float(np.median(seconds)) / tiles
        timings[f"{engine}:{precision}"] = per_tile
        print(
            f"  {engine:12s} {precision:5s} {per_tile:7.1f} ms per tile (median of "
            f"{args.repeats}; min {1000 * min(seconds) / tiles:7.1f}) = "
            f"{tile * tile / per_tile / 1e3:6.3f} MP/s; labels agree with the first on "
            f"{100 * agreement:.3f}%; RSS {psutil.Process().memory_info().rss / 2**30:5.2f} GiB"
        )
    first = next(iter(timings.values()))
    ratios = ", ".join(f"{name} {first / value:4.2f}x" for name, value in timings.items())
    print(f"  speed against the first: {ratios}; load average after {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="4096,8192,16384")
    parser.add_argument("--ratio-size", type=int, default=8192, help="scene size for the ratio")
    parser.add_argument("--model", help="shipped model name or directory")
    parser.add_argument("--tile", type=int, default=None)
    parser.add_argument("--overlap", type=int, default=None)
    defaults = InferenceSettings()
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--chunk-size", type=int, default=defaults.chunk_size)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=3, help="pipeline runs in the ratio")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--device", default="cpu", help="cpu (the targets' device) or cuda")
    parser.add_argument("--skip-precision", action="store_true")
    parser.add_argument("--phases", action="store_true", help="CPU time per step instead")
    parser.add_argument("--engine", default="torch", help="torch, onnxruntime or auto")
    parser.add_argument(
        "--engines",
        default="",
        help=f"measure each ENGINE:PRECISION of this list in turn (e.g. {ENGINES})",
    )
    parser.add_argument(
        "--engine-batch",
        action="store_true",
        help="one batch of Zion tiles through each of --engines in this process",
    )
    parser.add_argument("--threads", type=int, default=1, help="threads of --engine-batch")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of --engine-batch")
    args = parser.parse_args()
    sizes = [int(text) for text in args.sizes.split(",") if text]
    with tempfile.TemporaryDirectory(prefix="geoseg-bench-") as folder:
        work = Path(folder)
        if args.model:
            model: str | Path = args.model
        elif "landcover-landsat" in shipped_models():
            model = "landcover-landsat"
        else:
            model = random_model(work / "random-segnet", args.tile or 256, args.overlap or 32)
        print(f"date {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
        print(f"load average {os.getloadavg()}, cpus {os.cpu_count()}, torch {torch.__version__}")
        print(
            f"model {model}; device {args.device}; engine {args.engine}; "
            f"precision {args.precision}; "
            f"workers {args.workers} x 1 thread"
        )
        print(f"worker env {WORKER_ENV}")
        print(
            f"tile {args.tile or 'card'} overlap {args.overlap or 'card'} batch "
            f"{args.batch_size} chunk {args.chunk_size}"
        )
        if args.engine_batch:
            engine_batch(
                argparse.Namespace(**{**vars(args), "engines": args.engines or ENGINES}),
                model,
                work,
            )
        scenes = [mirrored_scene(work / f"mirror_{size}.tif", size) for size in sizes]
        if args.phases:
            report_phases(args, scenes[0], model, work)
            scenes = []
        pairs = engine_pairs(args.engines) if args.engines else [(args.engine, args.precision)]
        for engine, precision in pairs:
            measured = argparse.Namespace(
                **{**vars(args), "engine": engine, "precision": precision}
            )
            for index, scene in enumerate(scenes):
                run_size(measured, scene, model, work, first=sizes[index] == args.ratio_size)
        if not args.skip_precision:
            compare_precision(args, model, work)
        print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
