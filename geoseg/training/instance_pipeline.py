"""From an instance training config to a model directory, scored on its held-out windows.

``geoseg train`` runs :func:`train_instance_model_dir` when the config's task
is ``instance``: Mask R-CNN trained on the training windows, written (card +
safetensors), reloaded from the stored weights (float16 when asked) and scored
on every validation window through the shipped tiled inference: mask AP50,
precision and recall at IoU 0.5, and the count error, recorded in the card.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoseg.io.checkpoint import read_weights, write_model_dir
from geoseg.models.card import ModelCard, TrainingInfo
from geoseg.predict.instances import InstanceSettings
from geoseg.training.config import TrainConfig
from geoseg.training.instances import (
    AP_MIN_SCORE,
    InstanceTrainingResult,
    holdout_scores,
    train_instances,
)
from geoseg.training.pipeline import (
    build_untrained,
    config_card_fields,
    prepare_scenes,
    update_card,
)


@dataclass(frozen=True)
class TrainedInstanceModel:
    """The written card, the training history and the held-out scores."""

    card: ModelCard
    result: InstanceTrainingResult
    holdout: dict[str, Any]


def instance_card(config: TrainConfig, result: InstanceTrainingResult, command: str) -> ModelCard:
    """The card of a finished instance training (weights hash still to be filled in)."""
    return ModelCard(
        **config_card_fields(config),
        task="instance",
        training=TrainingInfo(
            data=config.training_data,
            split=config.split,
            epochs=config.epochs,
            seed=config.seed,
            loss="Mask R-CNN losses (RPN objectness + RPN box + classifier + box + mask), summed",
            command=command,
            duration_s=round(result.duration_s, 1),
        ),
        metrics={"epoch_losses": [round(loss, 4) for loss in result.epoch_losses]},
    )


def train_instance_model_dir(
    config: TrainConfig,
    root: Path,
    output: Path,
    *,
    command: str = "",
    log: Any = None,
) -> TrainedInstanceModel:
    """Train, write ``output``, score the stored weights on the validation windows."""
    scenes = prepare_scenes(config, root)
    module = build_untrained(config)
    result = train_instances(module, scenes, config, log=log)
    card = write_model_dir(output, result.state_dict, instance_card(config, result, command))
    module.load_state_dict(read_weights(output, card))  # score the weights as shipped
    module.eval()
    settings = InstanceSettings()
    holdout: dict[str, Any] = {}
    for number, scene in enumerate(scenes):
        for window in scene.validation_windows:
            scores = holdout_scores(
                module, scene, window, config.tile_size, config.overlap, settings
            )
            key = (
                f"scene{number}_rows{window.row}-{window.row_stop}"
                f"_cols{window.col}-{window.col_stop}"
            )
            holdout[key] = scores.to_dict()
    metrics = {
        **card.metrics,
        "holdout": holdout,
        "holdout_settings": {
            "min_score": settings.min_score,
            "ap50_min_score": AP_MIN_SCORE,
            "mask_threshold": settings.mask_threshold,
            "match_iou": settings.match_iou,
            "iou": 0.5,
        },
    }
    card = update_card(output, {"metrics": metrics})
    return TrainedInstanceModel(card, result, holdout)
