"""From a training config to a model directory: prepare scenes, train, write weights and card.

:func:`train_from_config` is what ``geoseg train --config`` runs. The card it
writes carries the config's bands, scaling, classes and tile geometry, the
training details (data, split, epochs, seed, loss, duration) and the
validation scores of the kept epoch; callers that measure more (the test-block
scores of :mod:`workflows.train_defaults`) add them with :func:`add_metrics`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from geoseg.change.metrics import scores
from geoseg.errors import ModelError
from geoseg.io.checkpoint import read_card, read_weights, write_model_dir
from geoseg.models.card import ModelCard, TrainingDomain, TrainingInfo
from geoseg.models.loading import LoadedModel
from geoseg.models.registry import build_model
from geoseg.training.config import TrainConfig
from geoseg.training.domain import training_domain
from geoseg.training.holdout import cpu_bf16_agreement
from geoseg.training.loop import TrainingResult, train_model
from geoseg.training.sampling import TrainingScene, prepare_scene

_PENDING_HASH = "0" * 64


@dataclass(frozen=True)
class TrainedModel:
    """A trained module (moved to the CPU), its scenes, training history and card."""

    module: nn.Module
    scenes: list[TrainingScene]
    result: TrainingResult
    card: ModelCard
    directory: Path


def prepare_scenes(config: TrainConfig, root: Path) -> list[TrainingScene]:
    """Every scene of ``config``, resolved against ``root`` (see :func:`prepare_scene`)."""
    class_ids = [spec.id for spec in config.classes]
    names = [band.name for band in config.bands]
    pixel_size = config.pixel_size_m if config.resampling == "card_pixel_size" else None
    return [
        prepare_scene(scene, names, class_ids, config.scaling, root, pixel_size_m=pixel_size)
        for scene in config.scenes
    ]


def build_untrained(config: TrainConfig) -> nn.Module:
    """The config's architecture, untrained (weights seeded by ``config.seed``)."""
    import torch

    torch.manual_seed(config.seed)
    return build_model(
        config.architecture,
        encoder=config.encoder,
        in_channels=len(config.bands),
        num_classes=len(config.classes),
        options=config.architecture_options,
    )


def config_card_fields(config: TrainConfig) -> dict[str, Any]:
    """The model-card fields a training config decides, for every task's card.

    The weights hash is a placeholder until the weights are written.
    """
    return {
        "name": config.name,
        "description": config.description,
        "architecture": config.architecture,
        "encoder": config.encoder,
        "architecture_options": config.architecture_options,
        "bands": config.bands,
        "scaling": config.scaling,
        "classes": config.classes,
        "pixel_size_m": config.pixel_size_m,
        "resampling": config.resampling,
        "tile_size": config.tile_size,
        "overlap": config.overlap,
        "attribution": config.attribution,
        "weights_dtype": config.weights_dtype,
        "weights_sha256": _PENDING_HASH,
    }


def card_for(
    config: TrainConfig,
    result: TrainingResult,
    command: str,
    domain: TrainingDomain | None = None,
) -> ModelCard:
    """The model card of a finished run (weights hash still to be filled in)."""
    names = [spec.name for spec in config.classes]
    validation: dict[str, Any] = {}
    if result.validation_matrix is not None:
        validation = scores(result.validation_matrix, names).to_dict()
    return ModelCard(
        **config_card_fields(config),
        training=TrainingInfo(
            data=config.training_data,
            split=config.split,
            epochs=len(result.history),
            seed=config.seed,
            loss=" + ".join(config.loss)
            + (
                f" (cross-entropy class weights {config.class_weights})"
                if config.class_weights
                else ""
            ),
            command=command,
            duration_s=round(result.duration_s, 1),
        ),
        metrics={"validation": validation, "best_epoch": result.best_epoch},
        training_domain=domain,
    )


def train_from_config(
    config: TrainConfig,
    root: Path,
    output: Path,
    *,
    command: str = "",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainedModel:
    """Train the model ``config`` describes and write it to the model directory ``output``.

    Parameters
    ----------
    config
        Validated training config.
    root
        Directory relative paths of the config are relative to.
    output
        Model directory to write (created if missing; files replaced atomically).
    command
        The command that reproduces the run, recorded in the card.
    progress
        Show a progress bar.
    log
        Called with one line per epoch.
    """
    scenes = prepare_scenes(config, root)
    module = build_untrained(config)
    result = train_model(module, scenes, config, progress=progress, log=log)
    domain = training_domain(scenes, [band.name for band in config.bands])
    card = write_model_dir(output, result.state_dict, card_for(config, result, command, domain))
    # the module scored afterwards is the one shipped: weights as stored (e.g. float16),
    # on the CPU whatever it was trained on (the CPU precision check and holdout scoring)
    module.to("cpu")
    module.load_state_dict(read_weights(output, card))
    card = record_precision_agreement(LoadedModel(module, card, output), scenes)
    card = record_onnx_check(output, scenes, log)
    return TrainedModel(module, scenes, result, card, output)


def record_onnx_check(
    directory: Path, scenes: list[TrainingScene], log: Callable[[str], None] | None = None
) -> ModelCard:
    """Record ONNX Runtime's fp32 and int8 agreement with PyTorch in the card of ``directory``.

    :func:`geoseg.training.quantize.record_onnx_agreement` (the int8 model is
    kept where it is accepted); a model that does not export to ONNX keeps
    none, and ``--engine auto`` runs it on PyTorch.
    """
    from geoseg.training.quantize import record_onnx_agreement

    try:
        check = record_onnx_agreement(directory, scenes)
    except ModelError as error:
        if log is not None:
            log(f"no ONNX Runtime agreement recorded: {error}")
        return read_card(directory)
    if log is not None and check.card.onnx is not None:
        record = check.card.onnx
        log(
            f"ONNX Runtime fp32 labels agree with PyTorch on {100 * record.fp32_agreement:.3f}%, "
            f"int8 on {100 * (record.int8_agreement or 0):.3f}% of the validation pixels (int8 "
            f"{'accepted' if check.accepted else 'refused'})"
        )
    return check.card


def record_precision_agreement(loaded: LoadedModel, scenes: list[TrainingScene]) -> ModelCard:
    """Measure :func:`~geoseg.training.holdout.cpu_bf16_agreement` and record it in the card."""
    agreement, _ = cpu_bf16_agreement(loaded, scenes)
    return update_card(loaded.directory, {"cpu_bf16_agreement": round(agreement, 5)})


def record_training_domain(config: TrainConfig, root: Path, directory: Path) -> ModelCard:
    """Write the training domain of ``config``'s scenes into the card of ``directory``.

    For a model trained before cards recorded it: the same scenes, windows and
    scaling as training (:func:`geoseg.training.domain.training_domain`); the
    weights are not touched (their hash is re-checked).
    """
    domain = training_domain(prepare_scenes(config, root), [band.name for band in config.bands])
    return update_card(directory, {"training_domain": domain.model_dump()})


def update_card(directory: Path, changes: dict[str, Any]) -> ModelCard:
    """Set card fields of ``directory`` (weights unchanged, card re-validated, hash re-checked)."""
    card = read_card(directory)
    state = read_weights(directory, card)
    updated = ModelCard.model_validate({**card.model_dump(), **changes})
    return write_model_dir(directory, state, updated)


def add_metrics(directory: Path, metrics: dict[str, Any]) -> ModelCard:
    """Merge ``metrics`` into the card of ``directory`` (weights unchanged, hash re-checked)."""
    return update_card(directory, {"metrics": {**read_card(directory).metrics, **metrics}})


def class_index_names(config: TrainConfig) -> list[str]:
    """Class names in output-channel order."""
    return [spec.name for spec in config.classes]


def finite(values: list[float]) -> list[float | None]:
    """``values`` with ``nan`` replaced by ``None`` (JSON-ready)."""
    return [round(value, 4) if np.isfinite(value) else None for value in values]
