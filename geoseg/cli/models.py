"""``geoseg models``: ``list``, ``show``, ``export``, ``quantize`` and ``export-stac`` NAME."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from geoseg.models.card import ModelCard


@click.group()
def models() -> None:
    """The shipped models and their model cards."""


@models.command("list")
def list_models() -> None:
    """Name, classes and test scores of every shipped model, and its aliases if any."""
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
        aliases = f"\taliases {','.join(card.aliases)}" if card.aliases else ""
        click.echo(
            f"{name}\t{card.architecture}\tbands {bands}\tclasses {classes}\t{score}{aliases}"
        )


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
    if card.onnx is not None:
        int8 = card.onnx.int8_agreement
        fp32 = card.onnx.fp32_agreement
        click.echo(
            f"ONNX Runtime fp32 labels agree with PyTorch fp32 on {100 * fp32:.2f}%"
            + ("" if int8 is None else f", int8 on {100 * int8:.2f}%")
            + f" of the validation pixels; int8 {'accepted' if card.onnx.int8_file else 'refused'}"
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


@models.command("export-stac")
@click.argument("name")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for NAME.stac.json, NAME.safetensors and NAME.card.json (created if missing).",
)
def export_stac(name: str, out: Path) -> None:
    """Export the model NAME (shipped or a directory) as a STAC MLM Item with its weights."""
    import torch

    from geoseg.io.stac import write_model_item
    from geoseg.models.loading import load_model

    loaded = load_model(name)  # builds the model and checks the weights against the card
    parameters = sum(parameter.numel() for parameter in loaded.module.parameters())
    item = write_model_item(
        loaded.directory,
        loaded.card,
        out,
        total_parameters=parameters,
        framework_version=str(torch.__version__),
    )
    click.echo(f"wrote {item} ({parameters} parameters)")


ZION_SCENE = "zion/zion_landsat8_20150818_b2345.tif"
"""The data directory's scene exports are checked on by default."""


@models.command("export")
@click.argument("name")
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["onnx"]),
    default="onnx",
    show_default=True,
    help="Exported model format.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write model.onnx and card.json into (new or empty).",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "int8"]),
    default="fp32",
    show_default=True,
    help="int8: the quantized model the card accepted (geoseg models quantize).",
)
@click.option(
    "--scene",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="GeoTIFF the export's labels are checked on [default: the data directory's Zion scene].",
)
def export(name: str, export_format: str, out: Path, precision: str, scene: Path | None) -> None:
    """Export NAME (a shipped model or a model directory) with its card into --out.

    The exported graph's labels must agree with PyTorch fp32's on at least
    99.9% of the scene's pixels (int8: 99.5%), else nothing is written.
    """
    from geoseg.models.export import export_model

    if scene is None:
        from geoseg.catalog.datadir import data_file

        scene = data_file(ZION_SCENE)
    record = export_model(
        name,
        out,
        scene,
        format="onnx",
        precision="int8" if precision == "int8" else "fp32",
    )
    click.echo(
        f"wrote {out / record.file} ({export_format}, opset {record.opset}, {record.precision}); "
        f"labels agree with PyTorch fp32 on {100 * record.label_agreement:.3f}% of "
        f"{record.pixels} tile pixels of {record.scene}"
    )


@models.command("quantize")
@click.argument("name")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The model's training config, whose windows calibrate and check it [default: "
    "workflows/configs/NAME.yaml, for a shipped model].",
)
@click.option(
    "--data-root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Folder that relative paths of the config are relative to [default: the data directory].",
)
def quantize(name: str, config_path: Path | None, data_root: Path | None) -> None:
    """Quantize NAME to int8 and record ONNX Runtime's agreement with PyTorch fp32 in its card.

    ORT fp32 and int8 labels are compared with PyTorch fp32 on the training
    config's validation windows; the int8 model is kept beside the weights
    only when at least 99.5% of the pixels agree (--precision int8 and
    --engine auto use it), else the command fails after recording the
    agreement. One tile's forward time per engine on this machine is recorded
    too: --engine auto tries the engines fastest first on CPUs of this kind.
    """
    from geoseg.catalog.datadir import data_dir
    from geoseg.errors import ModelError
    from geoseg.models.loading import resolve_model_dir
    from geoseg.predict.engines import INT8_AGREEMENT
    from geoseg.training.config import load_train_config
    from geoseg.training.pipeline import prepare_scenes
    from geoseg.training.quantize import record_onnx_agreement

    directory = resolve_model_dir(name)
    if config_path is None:
        from workflows.train_defaults import CONFIG_DIR

        config_path = CONFIG_DIR / f"{name}.yaml"
        if not config_path.exists():
            raise ModelError(
                f"{name}: no shipped training config {config_path.name}; pass --config, the "
                "config the model was trained with"
            )
    config = load_train_config(config_path)
    scenes = prepare_scenes(config, data_root or data_dir())
    check = record_onnx_agreement(directory, scenes)
    record = check.card.onnx
    assert record is not None and record.int8_agreement is not None
    click.echo(
        f"{name}: ORT fp32 labels agree with PyTorch fp32 on {100 * record.fp32_agreement:.3f}%, "
        f"int8 on {100 * record.int8_agreement:.3f}% of {record.pixels} validation pixels"
    )
    if record.cpu_speeds is not None:
        speeds = record.cpu_speeds
        fastest = sorted(speeds.ms_per_tile.items(), key=lambda item: item[1])
        times = ", ".join(f"{engine} {ms:.1f}" for engine, ms in fastest)
        click.echo(
            f"{name}: ms per {speeds.tile} px tile on this CPU ({speeds.threads} thread): {times} "
            "(--engine auto tries the engines in this order on CPUs of this kind)"
        )
    if not check.accepted:
        raise ModelError(
            f"{name}: int8 labels agree with fp32 on {100 * record.int8_agreement:.2f}% of the "
            f"validation pixels, below the {100 * INT8_AGREEMENT:.1f}% required; the agreement is "
            "recorded in the card, no int8 model kept (use fp32)"
        )
    click.echo(f"wrote {directory / str(record.int8_file)} (accepted for --precision int8)")


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
