"""What this machine's hardware offers inference, probed without importing torch.

Importing torch costs a process 1.5-2.5 s (and segmentation-models-pytorch
another 2 s); the process that submits a run (``geoseg predict``'s own) needs
neither to decide where and how the model runs. CPU features come from the
kernel's ``/proc/cpuinfo`` flags; whether CUDA can be usable at all from the
device nodes of an NVIDIA driver. Only where a flag cannot be read (no
``/proc/cpuinfo``) or a GPU driver is present does the caller ask torch
(:func:`geoseg.predict.inference.device_support`).
"""

from __future__ import annotations

import glob
import os
import sys
from functools import lru_cache
from pathlib import Path

BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
"""``/proc/cpuinfo`` flags of native bf16 arithmetic (else bf16 autocast is emulated)."""
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
"""``/proc/cpuinfo`` flags of int8 dot-product instructions (fast int8 ONNX Runtime)."""
NVIDIA_DEVICE_PATTERNS = ("/dev/nvidia[0-9]*", "/dev/nvidiactl", "/dev/dxg")
"""Device nodes of an NVIDIA driver (``/dev/dxg``: WSL 2); CUDA needs one of them."""


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo``; empty where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, separator, value = line.partition(":")
        if separator:
            fields.setdefault(name.strip(), value.strip())
    return fields


def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from ``/proc/cpuinfo``; None where it cannot be read."""
    flags = _cpuinfo().get("flags")
    return None if flags is None else frozenset(flags.split())


def has_any_flag(wanted: frozenset[str]) -> bool | None:
    """Whether the CPU has one of ``wanted``; None where the flags cannot be read."""
    flags = cpu_flags()
    return None if flags is None else bool(flags & wanted)


def cuda_possible() -> bool:
    """Whether CUDA may be usable here, so that torch must be asked.

    False on macOS and on Linux without an NVIDIA driver's device node (CUDA
    cannot run there); True elsewhere (Windows has no such nodes to look at).
    """
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return any(glob.glob(pattern) for pattern in NVIDIA_DEVICE_PATTERNS)
    return True


def intra_op_threads() -> int:
    """Threads one forward pass may use in this process, as PyTorch would count them.

    PyTorch's own count where it is loaded (a caller may have set it);
    otherwise ``OMP_NUM_THREADS`` (Dask workers of the local cluster: 1),
    else the CPUs this process may run on.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    text = os.environ.get("OMP_NUM_THREADS", "")
    if text.isdigit() and int(text) > 0:
        return int(text)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what the platform reports."""
    import platform

    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "unknown"
