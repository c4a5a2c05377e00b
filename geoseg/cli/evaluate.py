"""``geoseg evaluate --pred PRED.tif --truth TRUTH.tif [--classes MAP] [--json]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


@click.command()
@click.option(
    "--pred",
    "prediction",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Predicted class raster (e.g. the output of geoseg predict).",
)
@click.option(
    "--truth",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reference raster; on another grid it is aligned to PRED (nearest).",
)
@click.option(
    "--classes",
    "classes",
    default=None,
    help="Class map (YAML file or preset) turning truth codes into class ids "
    "[default: truth codes are class ids].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
@click.option("--window-size", default=1024, show_default=True, help="Pixels per window side.")
def evaluate(
    prediction: Path, truth: Path, classes: str | None, as_json: bool, window_size: int
) -> None:
    """Confusion matrix, per-class IoU / Dice / F1, mean IoU and overall accuracy."""
    from geoseg.change.classmap import load_class_map
    from geoseg.change.evaluate import evaluate_rasters

    class_map = load_class_map(classes) if classes else None
    result = evaluate_rasters(prediction, truth, class_map=class_map, window_size=window_size)
    summary: dict[str, Any] = result.to_dict()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    per_class: dict[str, Any] = summary["per_class"]
    click.echo(f"pixels compared: {summary['pixels']}")
    click.echo(f"mean IoU: {summary['mean_iou']}   overall accuracy: {summary['overall_accuracy']}")
    click.echo(f"{'id':>4s} {'class':16s} {'IoU':>7s} {'Dice/F1':>8s} {'pixels':>10s}")
    for class_id, (name, values) in zip(result.class_ids, per_class.items(), strict=True):
        click.echo(
            f"{class_id:4d} {name:16s} {values['iou']!s:>7s} {values['f1']!s:>8s} "
            f"{values['pixels']:10d}"
        )
    click.echo("confusion matrix (rows truth, columns prediction, in class id order):")
    for row in summary["confusion_matrix"]:
        click.echo("  " + " ".join(f"{value:9d}" for value in row))
