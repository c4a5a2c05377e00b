"""``geoseg train --config train.yaml --out MODEL_DIR``: train a model from a config."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Training config (YAML); unknown keys are rejected.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Model directory to write (card.json + weights.safetensors).",
)
@click.option(
    "--data-root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Folder that relative paths of the config are relative to "
    "(default: the data directory, else the config's folder).",
)
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def train(config_path: Path, out: Path, data_root: Path | None, progress: bool) -> None:
    """Train a segmentation model and write its model directory."""
    from geoseg.catalog.datadir import data_dir
    from geoseg.errors import DataDirError
    from geoseg.training.config import load_train_config
    from geoseg.training.pipeline import train_from_config

    config = load_train_config(config_path)
    if data_root is None:
        try:
            data_root = data_dir()
        except DataDirError:
            data_root = config_path.resolve().parent
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    command = f"geoseg train --config {config_path} --out {out}"
    if config.task == "instance":
        from geoseg.training.instance_pipeline import train_instance_model_dir

        instance = train_instance_model_dir(config, data_root, out, command=command, log=click.echo)
        for window, scores in instance.holdout.items():
            click.echo(f"held-out {window}: {scores}")
        click.echo(f"wrote {out}: {instance.result.duration_s:.0f} s")
        return
    trained = train_from_config(
        config,
        data_root,
        out,
        command=command,
        progress=progress,
        log=click.echo,
    )
    validation = trained.card.metrics.get("validation", {})
    click.echo(
        f"wrote {out}: best epoch {trained.result.best_epoch}, validation mean IoU "
        f"{validation.get('mean_iou')}, {trained.result.duration_s:.0f} s"
    )
