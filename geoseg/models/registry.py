"""The architecture registry: one factory builds any model from its card fields.

segmentation-models-pytorch architectures are built with
``encoder_weights=None`` (no download, ever); geoseg's own architectures are
registered beside them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from geoseg.errors import ModelError

if TYPE_CHECKING:  # torch and smp are imported when a model is built, not with the registry
    from torch import nn

ModelFactory = Callable[..., "nn.Module"]

_SMP_ARCHITECTURES: dict[str, str] = {
    "unet": "Unet",
    "unetplusplus": "UnetPlusPlus",
    "deeplabv3": "DeepLabV3",
    "deeplabv3plus": "DeepLabV3Plus",
    "fpn": "FPN",
    "pspnet": "PSPNet",
    "linknet": "Linknet",
    "manet": "MAnet",
    "pan": "PAN",
    "upernet": "UPerNet",
}

_CUSTOM: dict[str, ModelFactory] = {}

_INSTANCE_ARCHITECTURES = frozenset({"maskrcnn"})
"""Architectures whose card task is ``instance``; every other one is ``semantic``."""


def register_architecture(name: str, factory: ModelFactory) -> None:
    """Register a non-smp architecture under ``name``.

    ``factory(in_channels=..., num_classes=..., **options)`` must return a
    module mapping ``(N, in_channels, H, W)`` to logits ``(N, num_classes, H, W)``
    (task ``semantic``), or a torchvision-style detector (task ``instance``).
    """
    _CUSTOM[name.lower()] = factory


def architectures(task: str | None = None) -> list[str]:
    """Names of every buildable architecture, or of those of one ``task``."""
    _load_builtin_custom()
    names = sorted({*_SMP_ARCHITECTURES, *_CUSTOM})
    return [name for name in names if task is None or architecture_task(name) == task]


def architecture_task(architecture: str) -> str:
    """``instance`` for detectors (Mask R-CNN), else ``semantic``."""
    return "instance" if architecture.lower() in _INSTANCE_ARCHITECTURES else "semantic"


def _load_builtin_custom() -> None:
    """Register geoseg's own architectures (explicit, not an import side effect)."""
    if "segnet" in _CUSTOM:
        return
    from geoseg.models.maskrcnn import build_maskrcnn
    from geoseg.models.pixelnet import build_pixelnet
    from geoseg.models.segnet import build_segnet

    register_architecture("segnet", build_segnet)
    register_architecture("pixelnet", build_pixelnet)
    register_architecture("maskrcnn", build_maskrcnn)


def build_model(
    architecture: str,
    *,
    encoder: str = "",
    in_channels: int,
    num_classes: int,
    options: dict[str, Any] | None = None,
) -> nn.Module:
    """Build an untrained model.

    Parameters
    ----------
    architecture
        Registry name (see :func:`architectures`), case-insensitive.
    encoder
        smp encoder name (``resnet18``, ``mobilenet_v2``...); ignored by
        architectures without an encoder.
    in_channels
        Number of input bands.
    num_classes
        Number of output classes.
    options
        Extra keyword arguments for the architecture.

    Raises
    ------
    ModelError
        Unknown architecture or encoder; the message lists the valid names.
    """
    _load_builtin_custom()
    key = architecture.lower()
    options = dict(options or {})
    if key in _CUSTOM:
        return _CUSTOM[key](in_channels=in_channels, num_classes=num_classes, **options)
    if key not in _SMP_ARCHITECTURES:
        raise ModelError(
            f"unknown architecture {architecture!r}; valid names: {', '.join(architectures())}"
        )
    import segmentation_models_pytorch as smp

    encoders = smp.encoders.get_encoder_names()
    if encoder not in encoders:
        raise ModelError(
            f"unknown encoder {encoder!r} for {architecture}; valid encoders include: "
            f"{', '.join(sorted(encoders)[:40])}, ..."
        )
    model_class = getattr(smp, _SMP_ARCHITECTURES[key])
    try:
        module: nn.Module = model_class(
            encoder_name=encoder,
            encoder_weights=None,
            in_channels=in_channels,
            classes=num_classes,
            **options,
        )
    except (TypeError, ValueError, KeyError) as error:
        raise ModelError(f"cannot build {architecture} with encoder {encoder!r}: {error}") from None
    return module
