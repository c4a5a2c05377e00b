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
@click.option(
    "--panoptic",
    is_flag=True,
    help="Panoptic quality (PQ, SQ, RQ) of a panoptic or instance raster (bands instance_id, "
    "class_id; a one-band reference is instance ids of one thing class).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
@click.option("--window-size", default=1024, show_default=True, help="Pixels per window side.")
def evaluate(
    prediction: Path,
    truth: Path,
    classes: str | None,
    panoptic: bool,
    as_json: bool,
    window_size: int,
) -> None:
    """Confusion matrix, per-class IoU / Dice / F1, mean IoU and overall accuracy.

    With --panoptic: PQ, SQ and RQ over the classes, and per class.
    """
    if panoptic:
        _evaluate_panoptic(prediction, truth, as_json, window_size)
        return
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


def _evaluate_panoptic(prediction: Path, truth: Path, as_json: bool, window_size: int) -> None:
    from geoseg.change.classmap import class_names_from_tags
    from geoseg.io.raster import read_info
    from workflows.panoptic import evaluate_panoptic

    names = class_names_from_tags(read_info(truth).tags, str(truth))
    summary = evaluate_panoptic(prediction, truth, window_size).to_dict(names)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"PQ {summary['pq']}   SQ {summary['sq']}   RQ {summary['rq']}")
    click.echo(f"{'class':>8s} {'PQ':>7s} {'SQ':>7s} {'RQ':>7s} {'TP':>6s} {'FP':>6s} {'FN':>6s}")
    for name, values in summary["per_class"].items():
        click.echo(
            f"{name:>8s} {values['pq']!s:>7s} {values['sq']!s:>7s} {values['rq']!s:>7s} "
            f"{values['tp']:6d} {values['fp']:6d} {values['fn']:6d}"
        )
