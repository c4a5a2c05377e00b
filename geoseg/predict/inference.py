"""Running a segmentation model on batches of tiles.

Device selection (``auto`` | ``cpu`` | ``cuda``), precision (``fp32`` | ``bf16``
| ``fp16`` | ``auto``, applied as autocast), channels-last memory layout and
``torch.inference_mode``. Models are cached per process, keyed by their
directory and weights hash, so a Dask worker loads a model once, not per task.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from geoseg.errors import ConfigError, ModelError
from geoseg.io.checkpoint import read_card
from geoseg.models.loading import LoadedModel, load_model, resolve_model_dir
from geoseg.predict.hardware import BF16_FLAGS, cuda_possible, has_any_flag
from geoseg.predict.settings import Precision, check_device, check_precision

if TYPE_CHECKING:  # torch is imported by the processes that run a model, on first use
    import torch

AUTO_CPU_BF16_AGREEMENT = 0.995
"""Least recorded bf16/fp32 label agreement (model card) for ``auto`` to use bf16 on a CPU.

bf16 autocast on the CPU (AMD EPYC with avx512_bf16) was measured 1.6-1.9x
faster end to end, but its label agreement with fp32 depends on the model
(98.86% to 99.85% on the Zion scene for trainings of landcover-landsat; see
docs/benchmarks.md), so ``auto`` uses it only for a model whose card records an
agreement of at least this, and only on CPUs with native bf16 instructions.
"""


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of ``precision``; None for fp32 (no autocast)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


@dataclass(frozen=True)
class DeviceSupport:
    """What the hardware of the processes running inference offers it.

    Probed in each process by :func:`device_support`; for a Dask cluster,
    combined over the workers that run inference
    (:func:`workflows.cluster.inference_placement`), so that ``auto`` is
    resolved for the machines that run the model, not for the one submitting.
    """

    cuda: bool
    """A CUDA device is usable."""
    cuda_bf16: bool = False
    """The CUDA device runs bf16 (else ``auto`` uses fp16 on it)."""
    cpu_bf16: bool = False
    """The CPU has native bf16 instructions (see :func:`native_cpu_bf16`)."""
    onnxruntime: bool = False
    """onnxruntime is installed (``--engine onnxruntime``)."""
    ort_cuda: bool = False
    """ONNX Runtime has its CUDA execution provider and a CUDA device is usable."""
    cpu_vnni: bool = False
    """The CPU has int8 dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX-INT8)."""
    where: str = "this machine"
    """Whose hardware this is, for error messages."""


def device_support() -> DeviceSupport:
    """Probe this process's hardware (run on each Dask worker for a cluster).

    torch is imported only where CUDA may be usable
    (:func:`~geoseg.predict.hardware.cuda_possible`) or the CPU flags cannot
    be read: on a CPU-only Linux machine the probe costs milliseconds, not
    torch's import.
    """
    from geoseg.predict.onnx_runtime import cpu_vnni, onnxruntime_providers

    cuda = cuda_bf16 = False
    if cuda_possible():
        import torch

        cuda = torch.cuda.is_available()
        cuda_bf16 = cuda and torch.cuda.is_bf16_supported()
    providers = onnxruntime_providers()
    return DeviceSupport(
        cuda=cuda,
        cuda_bf16=cuda_bf16,
        cpu_bf16=native_cpu_bf16(),
        onnxruntime=providers is not None,
        ort_cuda=cuda and "CUDAExecutionProvider" in (providers or ()),
        cpu_vnni=cpu_vnni(),
    )


def select_device(device: str, support: DeviceSupport | None = None) -> str:
    """Resolve ``auto`` | ``cpu`` | ``cuda`` to ``cpu`` or ``cuda``.

    Parameters
    ----------
    device
        As asked for.
    support
        The hardware that runs the model; default this process's.

    Raises
    ------
    ConfigError
        Unknown name, or ``cuda`` asked for where no CUDA device is available.
    """
    check_device(device)
    if device == "cpu":
        return device
    support = support or device_support()
    if device == "auto":
        return "cuda" if support.cuda else "cpu"
    if not support.cuda:
        raise ConfigError(
            f"--device cuda was asked for but {support.where} has no CUDA device; "
            "use --device auto or cpu"
        )
    return device


def native_cpu_bf16() -> bool:
    """Whether this CPU has native bf16 instructions (AVX512-BF16 or AMX).

    Elsewhere bf16 autocast is emulated and not faster than fp32. Read from
    the kernel's CPU flags; torch is asked only where they cannot be read.
    """
    flags = has_any_flag(BF16_FLAGS)
    if flags is not None:
        return flags
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def select_precision(
    precision: str,
    device: str,
    cpu_bf16_agreement: float | None = None,
    support: DeviceSupport | None = None,
) -> Precision:
    """Resolve the autocast precision for a resolved ``device``.

    ``auto`` is bf16 on GPUs that support it (else fp16). On the CPU it is
    bf16 when the model card records a bf16/fp32 label agreement
    (``cpu_bf16_agreement``) of at least :data:`AUTO_CPU_BF16_AGREEMENT` and
    the CPU has native bf16 instructions; fp32 otherwise. ``support`` is the
    hardware that runs the model (default this process's).

    Raises
    ------
    ConfigError
        Unknown name, fp16 on CPU (not supported by CPU autocast kernels), or
        int8 (PyTorch runs no quantized model here).
    """
    check_precision(precision)
    if precision == "auto":
        support = support or device_support()
        if device == "cuda":
            return "bf16" if support.cuda_bf16 else "fp16"
        agrees = cpu_bf16_agreement is not None and cpu_bf16_agreement >= AUTO_CPU_BF16_AGREEMENT
        return "bf16" if agrees and support.cpu_bf16 else "fp32"
    if precision == "fp16" and device == "cpu":
        raise ConfigError("fp16 is not supported on the CPU; use fp32 or bf16")
    if precision == "int8":
        raise ConfigError("int8 runs only on ONNX Runtime; use --engine onnxruntime or auto")
    resolved: Precision = precision  # type: ignore[assignment]
    return resolved


@dataclass(frozen=True)
class ModelKey:
    """Identity of a model in the per-process cache."""

    directory: str
    weights_sha256: str
    device: str


_CACHE: dict[ModelKey, LoadedModel] = {}
_CACHE_LOCK = threading.Lock()
_LOADS = {"count": 0}


def model_key(name_or_dir: str | Path, device: str) -> ModelKey:
    """The cache key of a model: resolved directory, weights hash and device."""
    directory = resolve_model_dir(name_or_dir).resolve()
    card = read_card(directory)
    return ModelKey(str(directory), card.weights_sha256, device)


def cached_model(key: ModelKey) -> LoadedModel:
    """The model for ``key``, loaded (and moved to its device) once per process."""
    import torch

    with _CACHE_LOCK:
        loaded = _CACHE.get(key)
        if loaded is None:
            loaded = load_model(key.directory)
            module = loaded.module.to(key.device).to(memory_format=torch.channels_last)
            loaded = LoadedModel(module=module, card=loaded.card, directory=loaded.directory)
            _CACHE[key] = loaded
            _LOADS["count"] += 1
        return loaded


def model_loads() -> int:
    """How many times this process has loaded a model from disk (for tests)."""
    return _LOADS["count"]


CPU_FORWARD_TILES = 1
"""Tiles per forward pass on the CPU, whatever the batch size.

A batch is for the GPU; on the CPU larger forward passes are not faster but
hold larger activations. Shipped landcover U-Net, 512 px tiles, one thread,
fp32, batch of 8 run as passes of 1 / 2 / 8 tiles: 174-184 / 178-186 /
185-192 ms per tile, peak RSS 0.89 / 1.01 / 1.63-1.76 GiB.
"""


def forward_probabilities(
    loaded: LoadedModel, inputs: NDArray[np.float32], device: str, precision: Precision
) -> NDArray[np.float32]:
    """Softmax class probabilities of a batch.

    On the CPU the batch runs :data:`CPU_FORWARD_TILES` tiles per forward
    pass; on CUDA in one pass.

    Parameters
    ----------
    loaded
        A model from :func:`cached_model`.
    inputs
        ``(batch, bands, h, w)`` scaled model inputs.
    device, precision
        Resolved by :func:`select_device` and :func:`select_precision`.

    Returns
    -------
    numpy.ndarray
        ``(batch, classes, h, w)`` float32 probabilities.

    Raises
    ------
    ModelError
        The model rejects the input shape (e.g. a tile size it cannot divide).
    """
    step = CPU_FORWARD_TILES if device == "cpu" else len(inputs)
    if len(inputs) <= step:
        return _forward_pass(loaded, inputs, device, precision)
    first = _forward_pass(loaded, inputs[:step], device, precision)
    result = np.empty((len(inputs), *first.shape[1:]), dtype=np.float32)
    result[:step] = first
    for start in range(step, len(inputs), step):
        result[start : start + step] = _forward_pass(
            loaded, inputs[start : start + step], device, precision
        )
    return result


def _forward_pass(
    loaded: LoadedModel, inputs: NDArray[np.float32], device: str, precision: Precision
) -> NDArray[np.float32]:
    """One forward pass of ``inputs`` (see :func:`forward_probabilities`)."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(inputs)).to(device)
    tensor = tensor.contiguous(memory_format=torch.channels_last)
    dtype = autocast_dtype(precision)
    try:
        with (
            torch.inference_mode(),
            torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None),
        ):
            logits = loaded.module(tensor)
    except RuntimeError as error:
        raise ModelError(
            f"{loaded.directory}: the model cannot run on tiles of shape "
            f"{tuple(inputs.shape[-2:])}: {error}. Choose a tile size the model accepts "
            "(usually a multiple of 32)."
        ) from None
    probabilities = torch.softmax(logits.float(), dim=1)
    result: NDArray[np.float32] = probabilities.cpu().numpy().astype(np.float32, copy=False)
    return result
