"""A model card as a STAC Item with the machine learning model (MLM) extension (pure).

:func:`mlm_item` maps a :class:`~geoseg.models.card.ModelCard` to the Item
that ``geoseg models export-stac`` writes: ``mlm:name``, ``mlm:architecture``
(with the encoder), ``mlm:tasks`` (``semantic-segmentation`` or
``instance-segmentation``), ``mlm:framework`` ``pytorch`` and its version,
``mlm:input`` (the bands by common name, shape ``[-1, bands, tile, tile]``,
the card's scaling: ``z-score`` per band for ``standardize``, the scene
percentile stretch as a pre-processing function), ``mlm:output`` (the
classes as ``classification:classes``), ``mlm:total_parameters``,
``mlm:accelerator``, and the weights as the ``mlm:model`` asset (its href
relative to the Item, its SHA-256 as ``file:checksum``). The MLM version is
the one pystac's extension writes (1.4.0 with pystac-ext-mlm 1.4). A card
records no training area or dates, so the Item has no geometry and its
``datetime`` is the export time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from geoseg.models.card import ModelCard

TASKS = {"semantic": "semantic-segmentation", "instance": "instance-segmentation"}
"""``mlm:tasks`` of each card task."""
WEIGHTS_MEDIA_TYPE = "application/octet-stream; application=safetensors"
"""Media type of a safetensors weights file."""
SCENE_PERCENTILE_FUNCTION = "geoseg.predict.preprocess:normalize"
"""Where the scene-percentile stretch is implemented (with ``scene_statistics``)."""
_SHA256_MULTIHASH = "1220"


def _value_scaling(card: ModelCard) -> list[dict[str, Any]] | None:
    """Per band, the z-score of a ``standardize`` card (None: the scene-percentile stretch)."""
    scaling = card.scaling
    if scaling.method != "standardize" or scaling.mean is None or scaling.std is None:
        return None
    return [
        {"type": "z-score", "mean": mean, "stddev": std}
        for mean, std in zip(scaling.mean, scaling.std, strict=True)
    ]


def _input_description(card: ModelCard) -> str:
    scaling = card.scaling
    if scaling.method == "standardize":
        how = "(value - mean) / std per band with the training statistics"
    else:
        low, high = scaling.percentiles
        how = (
            f"per band, the scene's percentiles {low:g} and {high:g} of valid pixels "
            "(computed once over the whole scene) map to 0 and 1"
        )
    return (
        f"{', '.join(card.band_names)} in {scaling.units} ({card.pixel_size_m:g} m pixels), "
        f"scaled: {how}; invalid pixels are 0"
    )


def mlm_item(
    card: ModelCard,
    *,
    weights_href: str,
    total_parameters: int,
    framework_version: str,
    card_href: str | None = None,
    created: datetime | None = None,
) -> dict[str, Any]:
    """The STAC MLM Item (a dict) of a model card.

    Parameters
    ----------
    card
        The model card.
    weights_href
        The weights file, relative to where the Item is written.
    total_parameters
        Parameters of the model built from the card.
    framework_version
        The PyTorch version.
    card_href
        The card JSON, relative to the Item (None: no ``card`` asset).
    created
        The Item's ``datetime`` (default: now).
    """
    import pystac
    from pystac.extensions.eo import EOExtension
    from pystac.extensions.file import FileExtension
    from pystac.extensions.mlm import (
        AcceleratorType,
        AssetGeneralMLMExtension,
        InputStructure,
        MLMExtension,
        ModelInput,
        ModelOutput,
        ProcessingExpression,
        ResultStructure,
        TaskType,
    )
    from pystac.extensions.raster import DataType

    from geoseg.report.stac import card_classes, stac_classes

    tile, bands = card.tile_size, len(card.bands)
    task = TaskType(TASKS[card.task])
    item = pystac.Item(
        id=card.name,
        geometry=None,
        bbox=None,
        datetime=(created or datetime.now(UTC)).astimezone(UTC),
        properties={"description": card.description, "gsd": card.pixel_size_m},
    )
    model_input = ModelInput.create(
        name="scene",
        bands=card.band_names,
        input=InputStructure.create(
            shape=[-1, bands, tile, tile],
            dim_order=["batch", "bands", "height", "width"],
            data_type=DataType.FLOAT32,
        ),
        description=_input_description(card),
        pre_processing_function=None
        if card.scaling.method == "standardize"
        else ProcessingExpression.create(format="python", expression=SCENE_PERCENTILE_FUNCTION),
    )
    model_input.properties["value_scaling"] = _value_scaling(card)
    classes = stac_classes(card_classes(card))
    if card.task == "semantic":
        result = ResultStructure.create(
            shape=[-1, card.num_classes, tile, tile],
            dim_order=["batch", "channel", "height", "width"],
            data_type=DataType.FLOAT32,
        )
        description = "logits per class, in the order of the classes; label = argmax"
    else:
        result = ResultStructure.create(
            shape=[-1, 1, tile, tile],
            dim_order=["batch", "channel", "height", "width"],
            data_type=DataType.FLOAT32,
        )
        description = (
            "per detected object a box, a class, a score and a mask (torchvision Mask R-CNN "
            "outputs); geoseg resolves objects across tiles"
        )
    encoder = f" ({card.encoder} encoder)" if card.encoder else ""
    MLMExtension.ext(item, add_if_missing=True).apply(
        name=card.name,
        architecture=f"{card.architecture}{encoder}",
        tasks=[task],
        input=[model_input],
        output=[
            ModelOutput.create(
                name="classes" if card.task == "semantic" else "instances",
                tasks=[task],
                result=result,
                description=description,
                classes=classes,
            )
        ],
        framework="pytorch",
        framework_version=framework_version,
        total_parameters=total_parameters,
        pretrained=False,
        accelerator=AcceleratorType.CUDA,
        accelerator_constrained=False,
        accelerator_summary="runs on CUDA (bf16 or fp16 autocast) or on the CPU (fp32; bf16 "
        "where the card's cpu_bf16_agreement allows it)",
    )
    weights = pystac.Asset(
        href=weights_href,
        media_type=WEIGHTS_MEDIA_TYPE,
        roles=["mlm:model", "mlm:weights", "data"],
        title=f"{card.name} weights ({card.weights_dtype} state dict)",
    )
    item.add_asset("weights", weights)
    AssetGeneralMLMExtension.ext(weights, add_if_missing=True).apply(artifact_type="safetensors")
    EOExtension.ext(weights, add_if_missing=True).apply(
        bands=[
            pystac.extensions.eo.Band.create(name=name, common_name=name)
            for name in card.band_names
        ]
    )
    FileExtension.ext(weights, add_if_missing=True).apply(
        checksum=_SHA256_MULTIHASH + card.weights_sha256
    )
    if card_href is not None:
        item.add_asset(
            "card",
            pystac.Asset(
                href=card_href,
                media_type="application/json",
                roles=["metadata"],
                title="model card",
            ),
        )
    data: dict[str, Any] = item.to_dict(include_self_link=False, transform_hrefs=False)
    return data
