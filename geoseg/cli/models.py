"""``geoseg models list`` and ``geoseg models show NAME``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from geoseg.models.card import ModelCard


@click.group()
def models() -> None:
    """The shipped models and their model cards."""


@models.command("list")
def list_models() -> None:
    """Name, classes and test scores of every shipped model."""
    from geoseg.io.checkpoint import read_card
    from geoseg.models.loading import resolve_model_dir, shipped_models

    for name in shipped_models():
        card = read_card(resolve_model_dir(name))
        test = card.metrics.get("test_block", {}).get("model", {})
        score = f"test mean IoU {test.get('mean_iou')}"
        if card.task == "instance":
            holdout: dict[str, Any] = next(iter(card.metrics.get("holdout", {}).values()), {})
            score = f"held-out mask AP50 {holdout.get('ap50')}"
        classes = ", ".join(spec.name for spec in card.classes)
        bands = ",".join(card.band_names)
        click.echo(f"{name}\t{card.architecture}\tbands {bands}\tclasses {classes}\t{score}")


@models.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the whole card as JSON.")
def show(name: str, as_json: bool) -> None:
    """The model card of NAME (a shipped model or a model directory)."""
    from geoseg.io.checkpoint import read_card
    from geoseg.models.loading import resolve_model_dir

    directory = resolve_model_dir(name)
    card = read_card(directory)
    if as_json:
        click.echo(card.model_dump_json(indent=2))
        return
    click.echo(f"{card.name}  ({directory})")
    click.echo(card.description)
    encoder = f" / {card.encoder}" if card.encoder else ""
    options = json.dumps(card.architecture_options)
    click.echo(f"task: {card.task}, architecture: {card.architecture}{encoder} {options}")
    click.echo(f"bands: {', '.join(card.band_names)}")
    scaling = card.scaling
    click.echo(
        f"scaling: {scaling.method} (percentiles {scaling.percentiles[0]:g}-"
        f"{scaling.percentiles[1]:g}; units: {scaling.units})"
    )
    click.echo("classes: " + ", ".join(f"{c.id} {c.name} {c.color}" for c in card.classes))
    click.echo(f"tile size {card.tile_size}, overlap {card.overlap}, pixel {card.pixel_size_m} m")
    click.echo(f"training: {card.training.split}")
    click.echo(
        f"  epochs {card.training.epochs}, seed {card.training.seed}, loss "
        f"{card.training.loss}, {card.training.duration_s} s"
    )
    test = card.metrics.get("test_block")
    if test:
        model, baseline = test["model"], test["random_forest_baseline"]
        click.echo(f"test block: {test['definition']}")
        click.echo(f"  {'':16s} {'model':>8s} {'RF':>8s}")
        click.echo(f"  {'mean IoU':16s} {model['mean_iou']!s:>8s} {baseline['mean_iou']!s:>8s}")
        for class_name, values in model["per_class"].items():
            other = baseline["per_class"][class_name]
            click.echo(f"  F1 {class_name:13s} {values['f1']!s:>8s} {other['f1']!s:>8s}")
    for window, scores in card.metrics.get("holdout", {}).items():
        click.echo(f"held out {window}: {json.dumps(scores)}")
    _echo_held_out_regions(card)
    if card.cpu_bf16_agreement is not None:
        click.echo(
            f"CPU bf16 labels agree with fp32 on {100 * card.cpu_bf16_agreement:.2f}% of the "
            "validation pixels"
        )
    domain = card.training_domain
    if domain is not None:
        sizes = ", ".join(f"{size:g}" for size in domain.pixel_sizes_m)
        click.echo(
            f"training domain: {domain.pixels} pixels; pixel sizes {sizes} m; sensors "
            f"{', '.join(domain.sensors) or 'unknown'}"
        )
        click.echo(
            f"  {'model input':12s} {'p1':>8s} {'median':>8s} {'p99':>8s} {'mean':>8s} {'std':>8s}"
        )
        for band in domain.bands:
            click.echo(
                f"  {band.name:12s} {band.p1:8.3f} {band.p50:8.3f} {band.p99:8.3f} "
                f"{band.mean:8.3f} {band.std:8.3f}"
            )
    else:
        click.echo("training domain: not recorded (no out-of-domain warnings)")
    click.echo(f"weights sha256: {card.weights_sha256}")
    if card.attribution:
        click.echo(f"attribution: {card.attribution}")


def _echo_held_out_regions(card: ModelCard) -> None:
    """Forest-class kappa, F1 and IoU per region left out of training, beside the RF's kappa."""
    from geoseg.models.card import parse_held_out_regions

    regions = card.held_out_regions
    if regions is None:
        return
    raw = card.metrics["held_out_regions"].get("random_forest_baseline")
    baseline = parse_held_out_regions(raw) if raw is not None else {}
    click.echo("held-out regions (forest class; each region left out of its training run):")
    click.echo(f"  {'':12s} {'kappa':>7s} {'F1':>7s} {'IoU':>7s} {'RF kappa':>9s}")
    for name, scores in regions.items():
        other = baseline.get(name)
        rf = f"{other.kappa:>9.3f}" if other is not None else f"{'':>9s}"
        where = f"  ({scores.region}" if scores.region else ""
        if where and other is not None and other.region:
            where += f"; RF {other.region}"
        where += ")" if where else ""
        click.echo(
            f"  {name:12s} {scores.kappa:>7.3f} {scores.f1:>7.3f} {scores.iou:>7.3f} {rf}{where}"
        )
