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
from geoseg.predict.settings import Precision, check_device

if TYPE_CHECKING:
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
    """The autocast precision, resolved for the device, the hardware and the model."""


def place_inference(
    device: str,
    workers: Mapping[str, DeviceSupport],
    resources: Mapping[str, Mapping[str, float]] | None = None,
    where: str = "the Dask cluster",
    *,
    precision: str = "auto",
    cpu_bf16_agreement: float | None = None,
) -> InferencePlacement:
    """Resolve ``device`` and ``precision`` for workers that offer ``workers`` (by address).

    ``auto`` is ``cuda`` when some worker has a CUDA device. When only some
    workers have one, inference tasks go to them: by the ``GPU`` resource when
    exactly those workers advertise it (``dask worker --resources GPU=1``,
    dask-cuda), else by worker address. Precision support is what every
    worker running inference offers; ``precision`` is resolved for it and the
    model's recorded bf16 agreement (see
    :func:`geoseg.predict.inference.select_precision`).

    Raises
    ------
    ConfigError
        Unknown device or precision, no workers, ``cuda`` asked for and no
        worker has it, or fp16 on the CPU.
    """
    from geoseg.predict.inference import DeviceSupport, select_precision

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
        support = DeviceSupport(cuda=False, cpu_bf16=all(s.cpu_bf16 for s in every), where=where)
    else:
        chosen = [workers[address] for address in gpus]
        resolved = "cuda"
        support = DeviceSupport(
            cuda=True,
            cuda_bf16=all(s.cuda_bf16 for s in chosen),
            cpu_bf16=all(s.cpu_bf16 for s in chosen),
            where=where,
        )
    return InferencePlacement(
        resolved,
        support,
        _gpu_restrictions(gpus, len(workers), resources) if resolved == "cuda" else {},
        precision=select_precision(precision, resolved, cpu_bf16_agreement, support),
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
