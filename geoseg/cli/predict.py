"""``geoseg predict``: segment one GeoTIFF into a class-map COG.

Also the inference options that ``geoseg run`` and ``geoseg run-change``
share with it (:func:`inference_options`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from geoseg.cli import info, show_progress, warn
from geoseg.limits import MAX_MASK_BUFFER
from geoseg.predict.instances import InstanceSettings
from geoseg.predict.settings import DEVICES, ENGINES, PRECISIONS, InferenceSettings, PredictOutputs
from geoseg.report.stac import OutputAsset

if TYPE_CHECKING:
    from geoseg.grid import RasterGrid
    from geoseg.models.card import ModelCard

DEFAULTS = InferenceSettings()

INFERENCE_OPTIONS = (
    click.option("--tile", type=int, help="Tile size in pixels [default: the model card's]."),
    click.option("--overlap", type=int, help="Tile overlap in pixels [default: the model card's]."),
    click.option(
        "--batch-size",
        type=int,
        default=DEFAULTS.batch_size,
        show_default=True,
        help="Tiles per forward.",
    ),
    click.option(
        "--chunk-size",
        type=int,
        default=DEFAULTS.chunk_size,
        show_default=True,
        help="Output chunk side in pixels (the result does not depend on it).",
    ),
    click.option(
        "--device",
        type=click.Choice(DEVICES),
        default=DEFAULTS.device,
        show_default=True,
        help="Where the model runs; auto: CUDA when the workers (this machine, or the cluster's "
        "workers with --scheduler) have a GPU, else the CPU.",
    ),
    click.option(
        "--precision",
        type=click.Choice(PRECISIONS),
        default=DEFAULTS.precision,
        show_default=True,
        help="Precision of the model; auto: bf16 on CUDA (fp16 without bf16), on the "
        "CPU bf16 only where it is native and the model card records at least 99.5% label "
        "agreement with fp32, else fp32. int8: ONNX Runtime, where the card accepted the "
        "quantized model (geoseg models quantize).",
    ),
    click.option(
        "--engine",
        type=click.Choice(ENGINES),
        default=DEFAULTS.engine,
        show_default=True,
        help="What runs the model: torch, onnxruntime, or auto: the fastest engine and precision "
        "whose labels the model card records as agreeing with fp32 PyTorch on these workers.",
    ),
    click.option(
        "--max-pixels",
        type=int,
        default=DEFAULTS.max_pixels,
        show_default=True,
        help="Refuse a scene (or grid) declaring more rows x columns than this, before any work.",
    ),
    click.option(
        "--allow-pixel-size-mismatch",
        is_flag=True,
        help="Run a scene whose ground pixel size is 2x or more off the model card's "
        "(refused otherwise; 1.25x gives a warning). Better: resample it to the card's size.",
    ),
)
"""The options of :class:`~geoseg.predict.settings.InferenceSettings`, defaults from it."""

_SETTING_NAMES = frozenset(field.name for field in dataclasses.fields(InferenceSettings))


def inference_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give a click command the inference options, passed to it as one ``settings``.

    The command receives :class:`~geoseg.predict.settings.InferenceSettings`
    (validated before any file is read) instead of the options one by one;
    its own options named after a setting (``--bands`` of ``geoseg predict``)
    go into it too.
    """

    @functools.wraps(command)
    def with_settings(**options: Any) -> None:
        values = {name: options.pop(name) for name in _SETTING_NAMES & set(options)}
        command(settings=InferenceSettings(**values), **options)

    for option in reversed(INFERENCE_OPTIONS):
        with_settings = option(with_settings)
    return with_settings


def parse_band_map(text: str | None) -> dict[str, int] | None:
    """Parse ``blue=1,green=2,...`` into ``{"blue": 1, "green": 2}``.

    Raises
    ------
    click.BadParameter
        Malformed text.
    """
    if not text:
        return None
    mapping: dict[str, int] = {}
    for item in text.split(","):
        name, separator, index = item.partition("=")
        if not separator or not name.strip() or not index.strip().isdigit():
            raise click.BadParameter(
                f"expected NAME=INDEX pairs like blue=1,green=2, got {item!r}", param_hint="--bands"
            )
        mapping[name.strip().lower()] = int(index)
    return mapping


def _band_map_option(
    context: click.Context, parameter: click.Parameter, text: str | None
) -> dict[str, int] | None:
    return parse_band_map(text)


@click.command()
@click.argument("input_path", metavar="INPUT.tif", type=click.Path(path_type=Path))
@click.option(
    "--model",
    default="landcover-landsat",
    show_default=True,
    help="Shipped model name or model directory.",
)
@click.option(
    "--out",
    "labels_out",
    required=True,
    type=click.Path(path_type=Path),
    help="Output label COG.",
)
@click.option(
    "--probabilities",
    "probabilities_out",
    type=click.Path(path_type=Path),
    help="Also write per-class probabilities (uint8 = round(p * 255); nodata pixels 0) "
    "[default: none].",
)
@click.option(
    "--polygons",
    "polygons_out",
    type=click.Path(path_type=Path),
    help="Instance models: also write the instance polygons (.gpkg: GeoPackage, layer "
    "`instances`; .parquet: GeoParquet) [default: none].",
)
@click.option(
    "--min-score",
    type=float,
    default=InstanceSettings().min_score,
    show_default=True,
    help="Instance models: drop detections scoring less.",
)
@inference_options
@click.option(
    "--bands",
    callback=_band_map_option,
    help="Map the model's bands to raster bands, e.g. blue=1,green=2,red=3,nir=4 "
    "[default: from the raster's band descriptions].",
)
@click.option(
    "--mask",
    "masks",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Raster of pixels to leave out (band 1 non-zero = masked, read onto the input's grid; "
    "repeatable): label 255 and probability 0 there [default: none].",
)
@click.option(
    "--mask-buffer",
    type=click.IntRange(0, MAX_MASK_BUFFER),
    default=0,
    show_default=True,
    help="Grow the --mask pixels by this many pixels (a square, as Fmask dilates clouds).",
)
@click.option(
    "--allow-vrt",
    is_flag=True,
    help="Accept a GDAL VRT as INPUT (refused by default: a VRT can make GDAL read any file).",
)
@click.option(
    "--scheduler",
    help="Dask scheduler address [default: $DASK_SCHEDULER_ADDRESS, else a local cluster].",
)
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path),
    help="Folder for the resumable work directory [default: the output's folder].",
)
def predict(
    input_path: Path,
    model: str,
    labels_out: Path,
    probabilities_out: Path | None,
    polygons_out: Path | None,
    min_score: float,
    settings: InferenceSettings,
    masks: tuple[Path, ...],
    mask_buffer: int,
    scheduler: str | None,
    work_dir: Path | None,
) -> None:
    """Segment INPUT.tif with a model and write a class-map COG to --out.

    The scene is read window by window, segmented in overlapping tiles on one
    global grid, blended seamlessly and written as a tiled, compressed COG with
    the input's CRS, transform and shape. A rerun after an interruption resumes.
    A model whose card says `resampling: card_pixel_size` reads a finer scene
    as block means at the card's pixel size (10 m as 3x3 blocks for 30 m); the
    COG is then on that coarser grid, and its GEOSEG_RESAMPLING tag says so.

    With an instance model (card task `instance`, e.g. buildings-atlanta) --out
    is an instance-id COG (bands instance_id and class_id, 0 background) and
    --polygons the instances as polygons; an object cut by a tile or chunk seam
    is one instance.
    """
    import contextlib
    import time

    from geoseg.io.raster import read_info

    entered = time.time()
    if polygons_out is not None:
        from geoseg.io.vector import polygon_format

        polygon_format(polygons_out)  # an unknown suffix is refused before any work

    # the input's header first: a bad or oversized file is refused before the model stack loads
    read_info(input_path, max_pixels=settings.max_pixels, allow_vrt=settings.allow_vrt)

    from workflows.cluster import dask_client, early_local_cluster

    # without --scheduler the local cluster starts now, while the model stack loads and the
    # scene is validated and planned; predict_file's local client is this cluster
    with early_local_cluster(scheduler) as early:
        from geoseg.io.checkpoint import read_card
        from geoseg.models.loading import alias_notice, model_name, resolve_model_dir

        card = read_card(resolve_model_dir(model))
        if notice := alias_notice(model_name(model, card)):
            info(notice)
        if card.task == "instance":
            _predict_instances(
                input_path,
                model,
                (labels_out, polygons_out, probabilities_out),
                min_score,
                settings,
                scheduler=scheduler,
                work_dir=work_dir,
                masks=(masks, mask_buffer),
            )
            return
        if polygons_out is not None:
            raise click.UsageError("--polygons needs an instance model (card task 'instance')")

        from workflows.predict import predict_file

        # the local cluster (the early one) is asked for only once the run is planned
        with dask_client(scheduler) if scheduler else contextlib.nullcontext(None) as client:
            result = predict_file(
                input_path,
                model,
                settings,
                PredictOutputs(labels_out, probabilities_out),
                client=client,
                work_dir=work_dir,
                progress=show_progress(),
                masks=masks,
                mask_buffer=mask_buffer,
            )
        assets = {"labels": OutputAsset(result.labels, ("data",), "class labels")}
        if result.probabilities is not None:
            assets["probabilities"] = OutputAsset(
                result.probabilities, ("data",), "class probabilities (uint8, p x 255)"
            )
        item = _write_item(input_path, card, assets, result.grid)
        worked = time.time()
    click.echo(
        f"wrote {result.labels} ({result.grid.height}x{result.grid.width}, "
        f"{result.tiles} tiles, {result.device}/{result.engine}/{result.precision}, "
        f"{result.seconds:.1f} s)"
    )
    if result.probabilities is not None:
        click.echo(f"wrote {result.probabilities}")
    click.echo(f"wrote {item}")
    if result.resampling is not None and result.resampling.factor > 1:
        info(result.resampling.notice(str(input_path)))
    for finding in result.domain_findings:
        warn(f"{input_path}: {finding.message}")
    phases = command_phases(entered, worked, {} if early is None else early.timings)
    info("timings: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in phases.items()))


def command_phases(entered: float, worked: float, cluster: dict[str, float]) -> dict[str, float]:
    """The phases of the command's wall time, in seconds, for the ``timings:`` line.

    ``start-up``: from the process's start (interpreter, imports, option
    parsing) to the command body, ``entered`` (``time.time()``); ``work``:
    from there to ``worked``, less the wait for the local cluster; from
    ``cluster`` (:attr:`workflows.cluster.EarlyCluster.timings`, empty with a
    scheduler): ``cluster-start`` (in the background, hidden by the work up to
    ``cluster-wait``), ``cluster-wait`` and ``shutdown``. The process's exit
    after the line is not in it.
    """
    import psutil

    waited = cluster.get("cluster_wait_s", 0.0)
    phases = {
        "start-up": entered - psutil.Process().create_time(),
        "cluster-start": cluster.get("cluster_start_s", 0.0),
        "cluster-wait": waited,
        "work": worked - entered - waited,
        "shutdown": cluster.get("shutdown_s", 0.0),
    }
    return {name: max(0.0, seconds) for name, seconds in phases.items()}


def _predict_instances(
    input_path: Path,
    model: str,
    outputs: tuple[Path, Path | None, Path | None],
    min_score: float,
    settings: InferenceSettings,
    *,
    scheduler: str | None,
    work_dir: Path | None,
    masks: tuple[tuple[Path, ...], int],
) -> None:
    """``geoseg predict`` with an instance model: on the cluster, as semantic prediction."""
    import contextlib

    from geoseg.io.checkpoint import read_card
    from geoseg.models.loading import resolve_model_dir
    from workflows.cluster import dask_client
    from workflows.predict_instances import predict_instances_file

    raster, polygons, probabilities = outputs
    if probabilities is not None:
        raise click.UsageError("--probabilities is for semantic models; use --polygons")
    with dask_client(scheduler) if scheduler else contextlib.nullcontext(None) as client:
        result = predict_instances_file(
            input_path,
            model,
            settings,
            InstanceSettings(min_score=min_score),
            raster,
            polygons,
            client=client,
            work_dir=work_dir,
            progress=show_progress(),
            masks=masks[0],
            mask_buffer=masks[1],
        )
    assets = {"instances": OutputAsset(result.raster, ("data",), "instance and class ids")}
    if result.polygons is not None:
        assets["polygons"] = OutputAsset(result.polygons, ("data",), "instance polygons")
    item = _write_item(input_path, read_card(resolve_model_dir(model)), assets, result.grid)
    click.echo(
        f"wrote {result.raster} ({result.grid.height}x{result.grid.width}, {result.tiles} "
        f"tiles, {result.instances} instances, {result.device}/{result.precision}, "
        f"{result.seconds:.1f} s)"
    )
    if result.polygons is not None:
        click.echo(f"wrote {result.polygons}")
    click.echo(f"wrote {item}")


def _write_item(
    input_path: Path, card: ModelCard, assets: dict[str, OutputAsset], grid: RasterGrid
) -> Path:
    """The STAC Item of a prediction's outputs, beside the first one."""
    from datetime import UTC, datetime

    from geoseg.io.stac import write_output_item
    from geoseg.report.stac import card_classes

    primary = next(iter(assets.values())).path
    return write_output_item(
        primary,
        assets,
        grid=grid,
        processed=datetime.now(UTC),
        lineage=f"geoseg predict: {input_path} segmented by model {card.name} "
        f"(weights sha256 {card.weights_sha256})",
        classes=card_classes(card),
    )
