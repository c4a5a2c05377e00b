"""Running a segmentation model on ONNX Runtime (``--engine onnxruntime``).

A session per process, built once and cached like the PyTorch model
(:func:`geoseg.predict.inference.cached_model`), keyed by the model's identity
(directory and weights hash), the device, the precision and the thread count:

- fp32: the ONNX graph exported from the card's PyTorch model
  (:func:`geoseg.models.export.onnx_bytes`), kept in this machine's cache
  (:func:`onnx_cache_dir`) under the weights' SHA-256: the first run on a
  machine exports it, later runs read it and never import PyTorch
  (:func:`fp32_session`);
- int8: the quantized graph the model directory holds (``card.onnx.int8_file``,
  written and checked against fp32 by ``geoseg models quantize``), its SHA-256
  verified.

Sessions use the CPU execution provider with every graph optimization
(``ORT_ENABLE_ALL``), sequential execution, one inter-op thread and as many
intra-op threads as the process gives PyTorch
(:func:`geoseg.predict.hardware.intra_op_threads`: one per worker of the
local cluster), or the CUDA execution provider on a CUDA
device. As with PyTorch on the CPU, tiles run one per forward pass
(:data:`geoseg.predict.inference.CPU_FORWARD_TILES`), so a tile's output does
not depend on the batch it is in.

onnxruntime is imported only when a session is built; a worker running ONNX
Runtime imports neither PyTorch nor segmentation-models-pytorch (2-4 s of a
process's start) unless it has to export.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from geoseg.errors import ModelError
from geoseg.predict.hardware import INT8_DOT_FLAGS, has_any_flag, intra_op_threads

if TYPE_CHECKING:
    from geoseg.predict.inference import ModelKey

INPUT_NAME = "inputs"
"""Name of the exported graph's input: ``(batch, bands, height, width)`` float32."""
OUTPUT_NAME = "logits"
"""Name of the exported graph's output: ``(batch, classes, height, width)`` float32."""


def onnxruntime_providers() -> tuple[str, ...] | None:
    """ONNX Runtime's available execution providers here; None when it is not installed."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime

    return tuple(onnxruntime.get_available_providers())


def cpu_vnni() -> bool:
    """Whether this CPU has int8 dot-product instructions (Linux ``/proc/cpuinfo`` flags)."""
    return bool(has_any_flag(INT8_DOT_FLAGS))


def session_options(threads: int) -> Any:
    """Session options: ORT_ENABLE_ALL, sequential, ``threads`` intra-op threads, 1 inter-op."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def execution_providers(device: str) -> list[str]:
    """The execution providers of a session on ``device`` (``cpu`` or ``cuda``).

    Raises
    ------
    ModelError
        ``cuda`` without ONNX Runtime's CUDA execution provider.
    """
    if device != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in (onnxruntime_providers() or ()):
        raise ModelError(
            "ONNX Runtime has no CUDA execution provider here; install onnxruntime-gpu, or run "
            "with --engine torch"
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def make_session(model: bytes, device: str, threads: int) -> Any:
    """An ``onnxruntime.InferenceSession`` over the serialized ONNX ``model``."""
    import onnxruntime

    return onnxruntime.InferenceSession(
        model, session_options(threads), providers=execution_providers(device)
    )


@dataclass(frozen=True)
class SessionKey:
    """Identity of a session in the per-process cache."""

    model: ModelKey
    precision: str
    threads: int


_SESSIONS: dict[SessionKey, Any] = {}
_SESSIONS_LOCK = threading.Lock()


def int8_model_bytes(directory: str | Path) -> bytes:
    """The accepted int8 model of a model directory, its SHA-256 checked against the card.

    Raises
    ------
    ModelError
        The card holds no accepted int8 model, or the file is missing or altered.
    """
    from geoseg.io.checkpoint import read_card

    card = read_card(Path(directory))
    record = card.onnx
    if record is None or record.int8_file is None:
        raise ModelError(
            f"{directory}: the model card holds no accepted int8 model; run `geoseg models "
            "quantize` or use fp32"
        )
    path = Path(directory) / record.int8_file
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelError(f"{path}: cannot read the int8 model ({error.strerror})") from None
    if hashlib.sha256(data).hexdigest() != record.int8_sha256:
        raise ModelError(
            f"{path}: SHA-256 differs from the model card's int8_sha256; run `geoseg models "
            "quantize` again"
        )
    return data


CACHE_ENV = "GEOSEG_CACHE_DIR"
"""Environment variable naming geoseg's cache folder (default ``$XDG_CACHE_HOME/geoseg``)."""


def onnx_cache_dir() -> Path:
    """Where exported fp32 ONNX graphs are kept on this machine.

    ``$GEOSEG_CACHE_DIR/onnx``, else ``$XDG_CACHE_HOME/geoseg/onnx``, else
    ``~/.cache/geoseg/onnx``. Files are named after the weights' SHA-256, so
    a retrained model never reads a stale graph; deleting the folder is safe.
    """
    root = os.environ.get(CACHE_ENV)
    if not root:
        base = os.environ.get("XDG_CACHE_HOME")
        if not base:
            try:
                base = str(Path.home() / ".cache")
            except RuntimeError:  # no home directory (a service account): the temp folder
                import tempfile

                base = tempfile.gettempdir()
        root = str(Path(base) / "geoseg")
    return Path(root) / "onnx"


def fp32_session(key: ModelKey, threads: int) -> Any:
    """A session of ``key``'s fp32 graph: from this machine's cache, else exported.

    An export is written to :func:`onnx_cache_dir` atomically (two workers
    exporting at once write the same graph); a cache that cannot be written
    is skipped, and a cached file ONNX Runtime cannot load is exported again.
    """
    from geoseg.io.atomic import atomic_path

    path = onnx_cache_dir() / f"{key.weights_sha256}-fp32.onnx"
    if path.is_file():
        try:
            return make_session(path.read_bytes(), key.device, threads)
        except ModelError:
            raise
        except Exception:  # a damaged cache file (onnxruntime raises its own types)
            path.unlink(missing_ok=True)
    from geoseg.models.export import onnx_bytes
    from geoseg.models.loading import load_model

    loaded = load_model(key.directory)
    data = onnx_bytes(loaded.module, len(loaded.card.bands))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, sync=False) as temporary:
            temporary.write_bytes(data)
    except OSError:
        pass  # a read-only cache: export again next time
    return make_session(data, key.device, threads)


def cached_session(key: ModelKey, precision: str) -> Any:
    """The ONNX Runtime session of ``key``'s model in ``precision``, built once per process."""
    session_key = SessionKey(key, precision, intra_op_threads())
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(session_key)
        if session is None:
            if precision == "int8":
                data = int8_model_bytes(key.directory)
                session = make_session(data, key.device, session_key.threads)
            else:
                session = fp32_session(key, session_key.threads)
            _SESSIONS[session_key] = session
        return session


def session_probabilities(
    session: Any, inputs: NDArray[np.float32], device: str, label: str = "the model"
) -> NDArray[np.float32]:
    """Softmax class probabilities of a batch ``(batch, bands, h, w)`` through ``session``.

    One tile per forward pass on the CPU, the whole batch on CUDA.

    Raises
    ------
    ModelError
        The session rejects the input (e.g. a tile size the model cannot divide).
    """
    from geoseg.predict.inference import CPU_FORWARD_TILES

    step = CPU_FORWARD_TILES if device == "cpu" else max(len(inputs), 1)
    result: NDArray[np.float32] | None = None
    for start in range(0, len(inputs), step):
        part = np.ascontiguousarray(inputs[start : start + step], dtype=np.float32)
        try:
            (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: part})
        except Exception as error:  # onnxruntime raises its own exception types
            raise ModelError(
                f"{label}: ONNX Runtime cannot run tiles of shape {tuple(inputs.shape[-2:])}: "
                f"{str(error).splitlines()[0]}. Choose a tile size the model accepts (usually a "
                "multiple of 32)."
            ) from None
        if result is None:
            result = np.empty((len(inputs), *logits.shape[1:]), dtype=np.float32)
        softmax(logits, out=result[start : start + step])
    assert result is not None  # never called with an empty batch
    return result


def softmax(logits: NDArray[np.float32], out: NDArray[np.float32]) -> None:
    """Softmax over axis 1 of ``logits`` into ``out`` (float32)."""
    np.subtract(logits, logits.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=1, keepdims=True)
