"""Which engine runs the model, and in which precision: the pure decision.

:func:`select_engine` resolves ``--engine torch|onnxruntime|auto`` together with
``--precision`` for a resolved device, the hardware of the workers
(:class:`~geoseg.predict.inference.DeviceSupport`) and what the model card
records about the labels of each engine and precision against fp32 PyTorch
(``cpu_bf16_agreement`` and :class:`~geoseg.models.card.OnnxRecord`).

``auto`` works as ``--precision auto`` does: the agreement and the speed are
measured when the model is packaged (``geoseg models quantize``) and read
from the card, not measured at run time (that would cost every run an export
and a few forward passes per engine, and its result would move with the
machine's load). On the CPU the candidates are tried fastest first and the
first whose labels the card accepts and the hardware runs natively is taken.
Fastest first means the order of the card's
:class:`~geoseg.models.card.CpuSpeeds` when they were measured on a CPU of the
same kind (the same native bf16 and int8 dot-product instructions): which
engine wins depends on the model (ORT int8 for the landcover U-Net, ORT fp32
for the per-pixel ``forest``); elsewhere the rule :data:`CPU_SPEED_ORDER`. On
CUDA ``auto`` is PyTorch (autocast bf16/fp16 on the GPU).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geoseg.errors import ConfigError
from geoseg.predict.settings import Engine, Precision, check_engine, check_precision

if TYPE_CHECKING:
    from geoseg.models.card import CpuSpeeds, OnnxRecord
    from geoseg.predict.inference import DeviceSupport

AUTO_ONNX_AGREEMENT = 0.999
"""Least recorded ORT fp32 / PyTorch fp32 label agreement for ``auto`` to run ONNX Runtime fp32."""

INT8_AGREEMENT = 0.995
"""Least int8 / PyTorch fp32 label agreement on the validation windows for int8 to be accepted."""

CPU_SPEED_ORDER: tuple[tuple[Engine, Precision], ...] = (
    ("onnxruntime", "int8"),
    ("torch", "bf16"),
    ("onnxruntime", "fp32"),
    ("torch", "fp32"),
)
"""CPU engines and precisions, fastest first: the order ``auto`` tries them in.

One 512 px tile of the shipped landcover U-Net, one thread, on an Intel Xeon with
AVX512-VNNI and AVX512-BF16 (a loaded machine, indicative): ORT int8 (static
QDQ) 75 ms, PyTorch bf16 84 ms, ORT fp32 110 ms, PyTorch fp32 152 ms. int8 is
taken only on CPUs with int8 dot-product instructions (VNNI), bf16 only on
CPUs with native bf16, as for ``--precision auto``.
"""


def int8_accepted(onnx: OnnxRecord | None) -> bool:
    """Whether the card holds an accepted int8 model (agreement at least :data:`INT8_AGREEMENT`)."""
    return (
        onnx is not None
        and onnx.int8_file is not None
        and onnx.int8_agreement is not None
        and onnx.int8_agreement >= INT8_AGREEMENT
    )


def _int8_refusal(onnx: OnnxRecord | None) -> ConfigError:
    """Why ``--precision int8`` is refused for this card."""
    if onnx is None or onnx.int8_agreement is None:
        return ConfigError(
            "--precision int8: the model card records no int8 agreement with fp32; run "
            "`geoseg models quantize MODEL` first, or use fp32"
        )
    return ConfigError(
        f"--precision int8: the model's int8 labels agree with fp32 on "
        f"{100 * onnx.int8_agreement:.2f}% of its validation pixels, below the "
        f"{100 * INT8_AGREEMENT:.1f}% required; use fp32 (or --engine auto)"
    )


def select_engine(
    engine: str,
    precision: str,
    device: str,
    support: DeviceSupport,
    *,
    cpu_bf16_agreement: float | None = None,
    onnx: OnnxRecord | None = None,
) -> tuple[Engine, Precision]:
    """Resolve the engine and precision for a resolved ``device`` and the workers' ``support``.

    - ``torch``: precision as :func:`~geoseg.predict.inference.select_precision`.
    - ``onnxruntime``: fp32, or int8 when asked for (refused unless the card
      accepted the int8 model); ``auto`` precision is int8 where accepted and
      the CPU has VNNI, else fp32. On CUDA it needs ONNX Runtime's CUDA
      execution provider and runs fp32.
    - ``auto``: on CUDA PyTorch; on the CPU the first of :func:`cpu_order`
      that fits the precision asked for, that the hardware runs natively and
      whose labels the card records as agreeing with fp32 PyTorch (ORT fp32
      at least :data:`AUTO_ONNX_AGREEMENT`, int8 accepted, bf16 as
      ``--precision auto``); PyTorch fp32 otherwise.

    Raises
    ------
    ConfigError
        Unknown names, a precision the engine does not run, int8 not accepted
        by the card, or ONNX Runtime (or its CUDA provider) missing on the
        workers.
    """
    from geoseg.predict.inference import select_precision

    check_precision(precision)
    check_engine(engine, precision)
    if engine == "auto":
        if precision == "int8":
            engine = "onnxruntime"
        elif device == "cuda" or precision in ("bf16", "fp16"):
            engine = "torch"
        else:
            return _auto_cpu(precision, support, cpu_bf16_agreement, onnx)
    if engine == "torch":
        return "torch", select_precision(precision, device, cpu_bf16_agreement, support)
    if device == "cuda":
        if not support.ort_cuda:
            raise ConfigError(
                f"--engine onnxruntime on CUDA needs ONNX Runtime's CUDA execution provider, which "
                f"{support.where} lacks; install onnxruntime-gpu, or use --engine torch"
            )
        if precision == "int8":
            raise ConfigError("--precision int8 runs on the CPU only; use --device cpu or fp32")
        return "onnxruntime", "fp32"
    if not support.onnxruntime:
        raise ConfigError(
            f"--engine onnxruntime: {support.where} has no onnxruntime installed; install it "
            "(pip install onnxruntime) or use --engine torch"
        )
    if precision == "int8":
        if not int8_accepted(onnx):
            raise _int8_refusal(onnx)
        return "onnxruntime", "int8"
    if precision == "auto" and int8_accepted(onnx) and support.cpu_vnni:
        return "onnxruntime", "int8"
    return "onnxruntime", "fp32"


def _auto_cpu(
    precision: str,
    support: DeviceSupport,
    cpu_bf16_agreement: float | None,
    onnx: OnnxRecord | None,
) -> tuple[Engine, Precision]:
    """``--engine auto`` on the CPU, precision ``auto`` or ``fp32``."""
    from geoseg.predict.inference import AUTO_CPU_BF16_AGREEMENT

    onnx_agrees = onnx is not None and onnx.fp32_agreement >= AUTO_ONNX_AGREEMENT
    usable = {
        ("onnxruntime", "int8"): support.onnxruntime and support.cpu_vnni and int8_accepted(onnx),
        ("torch", "bf16"): support.cpu_bf16
        and cpu_bf16_agreement is not None
        and cpu_bf16_agreement >= AUTO_CPU_BF16_AGREEMENT,
        ("onnxruntime", "fp32"): support.onnxruntime and onnx_agrees,
        ("torch", "fp32"): True,
    }
    for candidate in cpu_order(onnx.cpu_speeds if onnx is not None else None, support):
        if usable[candidate] and precision in ("auto", candidate[1]):
            return candidate
    return "torch", "fp32"


def cpu_order(
    speeds: CpuSpeeds | None, support: DeviceSupport
) -> tuple[tuple[Engine, Precision], ...]:
    """The CPU candidates fastest first for this model on the workers' kind of CPU.

    The card's measured times order them when they were measured on a CPU with
    the same native bf16 and int8 dot-product instructions as the workers';
    candidates it did not time keep their place of :data:`CPU_SPEED_ORDER`
    after the timed ones. Otherwise :data:`CPU_SPEED_ORDER`.
    """
    if speeds is None or (speeds.bf16, speeds.int8_dot) != (support.cpu_bf16, support.cpu_vnni):
        return CPU_SPEED_ORDER
    timed = sorted(
        (c for c in CPU_SPEED_ORDER if f"{c[0]}:{c[1]}" in speeds.ms_per_tile),
        key=lambda c: speeds.ms_per_tile[f"{c[0]}:{c[1]}"],
    )
    return (*timed, *(c for c in CPU_SPEED_ORDER if c not in timed))
