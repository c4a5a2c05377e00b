"""``geoseg run`` (segment an area) and ``geoseg run-change`` (change between two dates)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from geoseg.cli import info, show_progress
from geoseg.cli.change import echo_flags, loss_rule_options
from geoseg.cli.predict import inference_options
from geoseg.limits import DEFAULT_MASK_BUFFER, MAX_MASK_BUFFER

if TYPE_CHECKING:
    from geoseg.change.loss import LossRule
    from geoseg.predict.settings import InferenceSettings

_CATALOG_HELP = "static catalog (catalog.json or its folder) or STAC API URL; default: embedded"


def _instance_options(function: Callable[..., None]) -> Callable[..., None]:
    """``--instance-model`` and ``--min-score``, shared by ``run`` and ``run-change``."""
    from geoseg.predict.instances import InstanceSettings

    function = click.option(
        "--min-score",
        type=float,
        default=InstanceSettings().min_score,
        show_default=True,
        help="With --instance-model: drop detections scoring less.",
    )(function)
    return click.option(
        "--instance-model",
        default=None,
        help="Also detect objects with this instance model (card task 'instance', e.g. "
        "buildings-atlanta) over the same scenes; the scenes must have its bands "
        "[default: none].",
    )(function)


def _common(function: Callable[..., None]) -> Callable[..., None]:
    options: list[Callable[[Callable[..., None]], Callable[..., None]]] = [
        click.option("--bbox", required=True, help="MINX,MINY,MAXX,MAXY in --bbox-crs"),
        click.option("--bbox-crs", default="EPSG:4326", show_default=True, help="CRS of --bbox"),
        click.option("--catalog", "catalog", default=None, help=_CATALOG_HELP),
        click.option("--crs", default=None, help="target grid CRS (default: the scenes')"),
        click.option(
            "--resolution",
            type=float,
            default=None,
            help="target pixel size in CRS units [default: the scenes']",
        ),
        inference_options,
        click.option(
            "--mask-buffer",
            type=click.IntRange(0, MAX_MASK_BUFFER),
            default=DEFAULT_MASK_BUFFER,
            show_default=True,
            help="Pixels by which the clouds and cloud shadows of each scene's quality band grow "
            "before they are masked (Fmask's default: 3). Masked pixels are nodata (255).",
        ),
        click.option(
            "--allow-external-hrefs",
            is_flag=True,
            help="read catalog files outside the data directory (absolute or ../ hrefs)",
        ),
        click.option(
            "--scheduler", default=None, help="Dask scheduler address [default: a local cluster]"
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.command()
@click.option("--datetime", "datetime_range", required=True, help="DATE or START/END")
@click.option("--model", default="landcover-landsat", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="OUT.gpkg")
@click.option(
    "--labels", type=click.Path(path_type=Path), default=None, help="label COG [default: none]"
)
@click.option(
    "--quicklook",
    type=click.Path(path_type=Path),
    default=None,
    help="quicklook PNG [default: none]",
)
@_instance_options
@_common
def run(
    bbox: str,
    bbox_crs: str,
    datetime_range: str,
    model: str,
    out: Path,
    labels: Path | None,
    quicklook: Path | None,
    instance_model: str | None,
    min_score: float,
    catalog: str | None,
    crs: str | None,
    resolution: float | None,
    settings: InferenceSettings,
    mask_buffer: int,
    allow_external_hrefs: bool,
    scheduler: str | None,
) -> None:
    """Segment the catalog's scenes over a bbox; write GeoPackage, label COG and quicklook.

    With --instance-model, the detector's objects become layer `instances` of
    OUT.gpkg (`<stem>.instances.parquet` beside a .parquet OUT) and its
    instance-id COG goes beside it as `<stem>.instances.tif`.
    """
    from geoseg.bbox import make_bbox, parse_bbox_text
    from geoseg.predict.instances import InstanceSettings
    from workflows.cluster import early_local_cluster
    from workflows.run_bbox import run_bbox

    # the local cluster starts while the catalog is searched and the scenes verified
    with early_local_cluster(scheduler):
        run_bbox(
            make_bbox(parse_bbox_text(bbox), bbox_crs),
            datetime_range,
            out=out,
            model=model,
            labels_out=labels,
            quicklook_out=quicklook,
            catalog=catalog,
            crs=crs,
            resolution=resolution,
            settings=settings,
            mask_buffer=mask_buffer,
            allow_external_hrefs=allow_external_hrefs,
            progress=show_progress(),
            scheduler=scheduler,
            report=info,
            instance_model=instance_model,
            instance_settings=InstanceSettings(min_score=min_score),
        )


@click.command()
@click.option("--before", required=True, help="DATE or START/END of the first scene")
@click.option("--after", required=True, help="DATE or START/END of the second scene")
@click.option("--regions", required=True, help="regions file, or a region id of the catalog")
@click.option(
    "--region-layer", default=None, help="layer of the regions file [default: its only layer]"
)
@click.option(
    "--region-id-field",
    default=None,
    help="field naming each region [default: 'id', else feature numbers]",
)
@click.option("--model", default="forest", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="CHANGE.gpkg")
@click.option(
    "--stats",
    type=click.Path(path_type=Path),
    default=None,
    help="statistics table, CSV or Parquet [default: none]",
)
@loss_rule_options
@_instance_options
@_common
def run_change(
    bbox: str,
    bbox_crs: str,
    before: str,
    after: str,
    regions: str,
    region_layer: str | None,
    region_id_field: str | None,
    model: str,
    out: Path,
    stats: Path | None,
    rule: LossRule,
    instance_model: str | None,
    min_score: float,
    catalog: str | None,
    crs: str | None,
    resolution: float | None,
    settings: InferenceSettings,
    mask_buffer: int,
    allow_external_hrefs: bool,
    scheduler: str | None,
) -> None:
    """Segment both dates on one grid with one model, then change statistics per region.

    With --instance-model, the detector runs at both dates too: table `instances`
    (instances per region and class at both dates, as `geoseg change
    --before-instances/--after-instances`), layers `instances_before` and
    `instances_after`, and the id COGs `<stem>.before.instances.tif` and
    `<stem>.after.instances.tif`.
    """
    from geoseg.bbox import make_bbox, parse_bbox_text
    from geoseg.predict.instances import InstanceSettings
    from workflows.cluster import early_local_cluster
    from workflows.run_change import run_change as run_change_workflow

    # the local cluster starts while the catalog is searched and the scenes verified
    with early_local_cluster(scheduler):
        outputs = run_change_workflow(
            make_bbox(parse_bbox_text(bbox), bbox_crs),
            before,
            after,
            regions=regions,
            region_layer=region_layer,
            region_id_field=region_id_field,
            out=out,
            stats=stats,
            rule=rule,
            model=model,
            catalog=catalog,
            crs=crs,
            resolution=resolution,
            settings=settings,
            mask_buffer=mask_buffer,
            allow_external_hrefs=allow_external_hrefs,
            progress=show_progress(),
            scheduler=scheduler,
            report=info,
            instance_model=instance_model,
            instance_settings=InstanceSettings(min_score=min_score),
        )
    echo_flags(outputs.flags)
