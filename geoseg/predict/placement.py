"""Where and how the model runs: device, precision and the workers allowed to run it.

:func:`place_inference` is the pure decision, from what the workers' hardware
offers (:class:`geoseg.predict.inference.DeviceSupport`, probed by
:func:`workflows.cluster.inference_placement`): ``--device auto`` is resolved
for the machines that run the model, not for the one that submits, and on a
cluster where only some workers have a GPU, inference goes to those. The
precision is resolved here, once, for the device, the hardware and the model;
the plan and the run manifest read it from the placement.

torch is imported only when a placement is made, so that the workflows that run
no model can import this module for free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from geoseg.errors import ConfigError
from geoseg.predict.settings import Engine, Precision, check_device

if TYPE_CHECKING:
    from geoseg.models.card import OnnxRecord
    from geoseg.predict.inference import DeviceSupport


@dataclass(frozen=True)
class InferencePlacement:
    """Where and how the model runs: device, hardware, task restrictions and precision."""

    device: str
    """``cpu`` or ``cuda``."""
    support: DeviceSupport
    """The hardware of the workers that run the model, combined (every one must offer it)."""
    restrictions: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``Client.submit`` for inference tasks (``resources`` or
    ``workers``); empty when any worker may run them."""
    precision: Precision = field(kw_only=True)
    """The precision, resolved for the device, the hardware, the engine and the model."""
    engine: Engine = field(default="torch", kw_only=True)
    """The engine that runs the model (see :func:`geoseg.predict.engines.select_engine`)."""


def place_inference(
    device: str,
    workers: Mapping[str, DeviceSupport],
    resources: Mapping[str, Mapping[str, float]] | None = None,
    where: str = "the Dask cluster",
    *,
    precision: str = "auto",
    cpu_bf16_agreement: float | None = None,
    engine: str = "torch",
    onnx: OnnxRecord | None = None,
) -> InferencePlacement:
    """Resolve ``device``, ``engine`` and ``precision`` for workers that offer ``workers``.

    ``auto`` is ``cuda`` when some worker has a CUDA device. When only some
    workers have one, inference tasks go to them: by the ``GPU`` resource when
    exactly those workers advertise it (``dask worker --resources GPU=1``,
    dask-cuda), else by worker address. Precision support is what every
    worker running inference offers; ``precision`` is resolved for it and the
    model's recorded bf16 agreement, together with ``engine`` and the card's
    ONNX Runtime agreements ``onnx`` (see
    :func:`geoseg.predict.engines.select_engine`).

    Raises
    ------
    ConfigError
        Unknown device or precision, no workers, ``cuda`` asked for and no
        worker has it, or fp16 on the CPU.
    """
    from geoseg.predict.engines import select_engine
    from geoseg.predict.inference import DeviceSupport

    check_device(device)
    if not workers:
        raise ConfigError(f"{where} has no workers; start some, or run without --scheduler")
    gpus = sorted(address for address, support in workers.items() if support.cuda)
    if device == "cuda" and not gpus:
        count = f" (none of its {len(workers)} workers)" if len(workers) > 1 else ""
        more = "" if where == "this machine" else ", or add GPU workers to it"
        raise ConfigError(
            f"--device cuda was asked for but {where} has no CUDA device{count}; "
            f"use --device auto or cpu{more}"
        )
    if device == "cpu" or not gpus:
        every = list(workers.values())
        resolved = "cpu"
        support = DeviceSupport(
            cuda=False,
            cpu_bf16=all(s.cpu_bf16 for s in every),
            onnxruntime=all(s.onnxruntime for s in every),
            cpu_vnni=all(s.cpu_vnni for s in every),
            where=where,
        )
    else:
        chosen = [workers[address] for address in gpus]
        resolved = "cuda"
        support = DeviceSupport(
            cuda=True,
            cuda_bf16=all(s.cuda_bf16 for s in chosen),
            cpu_bf16=all(s.cpu_bf16 for s in chosen),
            onnxruntime=all(s.onnxruntime for s in chosen),
            ort_cuda=all(s.ort_cuda for s in chosen),
            cpu_vnni=all(s.cpu_vnni for s in chosen),
            where=where,
        )
    chosen_engine, chosen_precision = select_engine(
        engine,
        precision,
        resolved,
        support,
        cpu_bf16_agreement=cpu_bf16_agreement,
        onnx=onnx,
    )
    return InferencePlacement(
        resolved,
        support,
        _gpu_restrictions(gpus, len(workers), resources) if resolved == "cuda" else {},
        precision=chosen_precision,
        engine=chosen_engine,
    )


def _gpu_restrictions(
    gpus: list[str], workers: int, resources: Mapping[str, Mapping[str, float]] | None
) -> dict[str, Any]:
    """``Client.submit`` keyword arguments that send inference tasks to the ``gpus`` only."""
    if len(gpus) == workers:
        return {}
    advertised = sorted(a for a, r in (resources or {}).items() if r.get("GPU", 0) >= 1)
    if advertised == gpus:
        return {"resources": {"GPU": 1}}
    return {"workers": gpus}
