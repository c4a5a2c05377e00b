"""ONNX Runtime fp32 and int8 checked against PyTorch fp32 on a model's validation windows.

:func:`record_onnx_agreement` (``geoseg models quantize``) exports the model
(:func:`geoseg.models.export.onnx_bytes`), quantizes it to int8 with
calibration tiles drawn from the training windows
(:func:`geoseg.models.export.quantize_int8`), and measures on the validation
windows, as :func:`geoseg.training.holdout.cpu_bf16_agreement` does for bf16,
the share of the valid pixels each labels as PyTorch fp32 does. Both go into
the card (:class:`geoseg.models.card.OnnxRecord`); the int8 model is written
beside the weights only when its agreement is at least
:data:`geoseg.predict.engines.INT8_AGREEMENT`, and ``--precision int8`` and
``--engine auto`` use nothing else. :func:`cpu_speeds` times one tile per
engine on this machine, as a Dask worker runs it, for ``--engine auto``'s
order (:func:`geoseg.predict.engines.cpu_order`).
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from geoseg.errors import ModelError
from geoseg.io.atomic import atomic_path
from geoseg.models.card import CpuSpeeds, ModelCard, OnnxRecord
from geoseg.models.export import (
    QUANTIZATION,
    graph_opset,
    onnx_bytes,
    onnx_candidate,
    quantize_int8,
    torch_reference,
)
from geoseg.models.loading import LoadedModel, load_model
from geoseg.predict.engines import INT8_AGREEMENT
from geoseg.predict.hardware import INT8_DOT_FLAGS, cpu_name, has_any_flag
from geoseg.predict.inference import forward_probabilities, native_cpu_bf16
from geoseg.predict.onnx_runtime import make_session, session_probabilities
from geoseg.training.holdout import halo_windows, validation_agreement
from geoseg.training.sampling import TrainingScene, read_inputs

INT8_FILENAME = "model.int8.onnx"
CALIBRATION_TILES = 16
"""Calibration tiles drawn from the training windows (evenly over their tiles)."""


@dataclass(frozen=True)
class OnnxCheck:
    """The outcome of :func:`record_onnx_agreement`."""

    card: ModelCard
    """The card as written (its ``onnx`` record set)."""
    accepted: bool
    """Whether the int8 model was accepted and written."""


def calibration_tiles(
    scenes: list[TrainingScene], count: int = CALIBRATION_TILES, *, tile: int = 256, halo: int = 32
) -> list[NDArray[np.float32]]:
    """Up to ``count`` scaled input tiles from the training windows, evenly spaced over them."""
    windows = [
        (scene, read)
        for scene in scenes
        for read, _ in halo_windows(scene.train_windows, tile, halo)
    ]
    if not windows:
        return []
    picks = np.unique(
        np.linspace(0, len(windows) - 1, min(count, len(windows))).round().astype(int)
    )
    return [read_inputs(windows[i][0], windows[i][1])[0] for i in picks]


def record_onnx_agreement(directory: Path, scenes: list[TrainingScene]) -> OnnxCheck:
    """Measure ORT fp32 and int8 against PyTorch fp32 and record them in the card of ``directory``.

    The int8 model is written to ``directory`` / :data:`INT8_FILENAME` when its
    agreement is at least :data:`~geoseg.predict.engines.INT8_AGREEMENT`;
    otherwise a previous one is removed. The weights are not touched.

    Raises
    ------
    ModelError
        Not a semantic model, or the model does not export to ONNX.
    """
    from geoseg.training.pipeline import update_card

    loaded = load_model(directory)
    if loaded.card.task != "semantic":
        raise ModelError(
            f"{directory}: only semantic models run on ONNX Runtime, not {loaded.card.task} ones"
        )
    fp32 = onnx_bytes(loaded.module, len(loaded.card.bands))
    int8 = quantize_int8(fp32, calibration_tiles(scenes))
    shares, pixels = validation_agreement(
        torch_reference(directory),
        {"fp32": onnx_candidate(fp32), "int8": onnx_candidate(int8)},
        scenes,
    )
    accepted = shares["int8"] >= INT8_AGREEMENT
    path = Path(directory) / INT8_FILENAME
    if accepted:
        with atomic_path(path) as temporary:
            temporary.write_bytes(int8)
    else:
        path.unlink(missing_ok=True)
    tiles = calibration_tiles(scenes, 1)
    speeds = cpu_speeds(loaded, fp32, int8 if accepted else None, tiles[0]) if tiles else None
    record = OnnxRecord(
        opset=graph_opset(fp32),
        fp32_agreement=round(shares["fp32"], 6),
        int8_agreement=round(shares["int8"], 6),
        int8_file=INT8_FILENAME if accepted else None,
        int8_sha256=hashlib.sha256(int8).hexdigest() if accepted else None,
        quantization=QUANTIZATION,
        pixels=pixels,
        measured_on="the validation windows of the training scenes, 256 px pieces with 32 px "
        "of context",
        cpu_speeds=speeds,
    )
    card = update_card(Path(directory), {"onnx": record.model_dump()})
    return OnnxCheck(card, accepted)


SPEED_REPEATS = 5
"""Timed tiles per engine in :func:`cpu_speeds` (the median is kept)."""


def cpu_speeds(
    loaded: LoadedModel,
    fp32: bytes,
    int8: bytes | None,
    sample: NDArray[np.float32],
    *,
    threads: int = 1,
    repeats: int = SPEED_REPEATS,
) -> CpuSpeeds:
    """One tile's forward time per CPU engine here, as one Dask worker runs it.

    ``sample`` (scaled inputs ``(bands, h, w)``) is mirrored to the card's tile
    size; each engine runs it once to warm up, then ``repeats`` times, the
    engines taking turns so that a drift of the machine's speed reaches all
    alike; the median is kept. PyTorch bf16 is timed only on CPUs with native
    bf16, int8 only when ``int8`` (the accepted model) is given. PyTorch runs
    with ``threads`` intra-op threads, restored afterwards.
    """
    import torch

    loaded.module.to(memory_format=torch.channels_last)
    tile = loaded.card.tile_size
    grow = ((0, 0), (0, max(0, tile - sample.shape[1])), (0, max(0, tile - sample.shape[2])))
    mirrored = np.pad(sample, grow, mode="symmetric")[:, :tile, :tile]
    inputs = np.ascontiguousarray(mirrored[None], dtype=np.float32)
    runs: dict[str, Callable[[], object]] = {
        "torch:fp32": lambda: forward_probabilities(loaded, inputs, "cpu", "fp32"),
    }
    if native_cpu_bf16():
        runs["torch:bf16"] = lambda: forward_probabilities(loaded, inputs, "cpu", "bf16")
    for name, model in (("onnxruntime:fp32", fp32), ("onnxruntime:int8", int8)):
        if model is not None:
            runs[name] = functools.partial(
                session_probabilities, make_session(model, "cpu", threads), inputs, "cpu"
            )
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        for run in runs.values():
            run()
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                seconds[name].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return CpuSpeeds(
        cpu=cpu_name(),
        bf16=native_cpu_bf16(),
        int8_dot=bool(has_any_flag(INT8_DOT_FLAGS)),
        tile=tile,
        threads=threads,
        ms_per_tile={name: round(1000 * float(np.median(v)), 1) for name, v in seconds.items()},
    )
