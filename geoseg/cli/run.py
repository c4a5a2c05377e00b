"""``geoseg run`` (segment an area) and ``geoseg run-change`` (change between two dates)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import click

from geoseg.bbox import make_bbox, parse_bbox_text
from geoseg.change.loss import LossRule
from geoseg.cli.change import echo_flags, loss_rule_options
from geoseg.cli.predict import inference_options
from geoseg.predict.settings import InferenceSettings
from geoseg.quality import DEFAULT_MASK_BUFFER, MAX_MASK_BUFFER

_CATALOG_HELP = "static catalog (catalog.json or its folder) or STAC API URL; default: embedded"


def _echo(message: str) -> None:
    click.echo(message, err=True)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Print a warning as one ``geoseg: warning:`` line (no source line)."""
    click.echo(f"geoseg: warning: {message}", err=True)


@contextlib.contextmanager
def plain_warnings() -> Iterator[None]:
    """Print warnings as one ``geoseg: warning:`` line each while the block runs."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        yield


def _common(function: Callable[..., None]) -> Callable[..., None]:
    options: list[Callable[[Callable[..., None]], Callable[..., None]]] = [
        click.option("--bbox", required=True, help="MINX,MINY,MAXX,MAXY in --bbox-crs"),
        click.option("--bbox-crs", default="EPSG:4326", show_default=True, help="CRS of --bbox"),
        click.option("--catalog", "catalog", default=None, help=_CATALOG_HELP),
        click.option("--crs", default=None, help="target grid CRS (default: the scenes')"),
        click.option("--resolution", type=float, default=None, help="target pixel size"),
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
        click.option("--scheduler", default=None, help="Dask scheduler address"),
        click.option("--quiet", is_flag=True, help="no progress bars"),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.command()
@click.option("--datetime", "datetime_range", required=True, help="DATE or START/END")
@click.option("--model", default="landcover-landsat", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="OUT.gpkg")
@click.option("--labels", type=click.Path(path_type=Path), default=None, help="label COG")
@click.option("--quicklook", type=click.Path(path_type=Path), default=None, help="PNG")
@_common
def run(
    bbox: str,
    bbox_crs: str,
    datetime_range: str,
    model: str,
    out: Path,
    labels: Path | None,
    quicklook: Path | None,
    catalog: str | None,
    crs: str | None,
    resolution: float | None,
    settings: InferenceSettings,
    mask_buffer: int,
    allow_external_hrefs: bool,
    scheduler: str | None,
    quiet: bool,
) -> None:
    """Segment the catalog's scenes over a bbox; write GeoPackage, label COG and quicklook."""
    from workflows.run_bbox import run_bbox

    with plain_warnings():
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
            progress=not quiet,
            scheduler=scheduler,
            report=_echo,
        )


@click.command()
@click.option("--before", required=True, help="DATE or START/END of the first scene")
@click.option("--after", required=True, help="DATE or START/END of the second scene")
@click.option("--regions", required=True, help="regions file, or a region id of the catalog")
@click.option("--region-layer", default=None, help="layer of the regions file")
@click.option("--region-id-field", default=None, help="field naming each region")
@click.option("--model", default="forest-landsat", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="CHANGE.gpkg")
@click.option("--stats", type=click.Path(path_type=Path), default=None, help="CSV or Parquet")
@loss_rule_options
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
    catalog: str | None,
    crs: str | None,
    resolution: float | None,
    settings: InferenceSettings,
    mask_buffer: int,
    allow_external_hrefs: bool,
    scheduler: str | None,
    quiet: bool,
) -> None:
    """Segment both dates on one grid with one model, then change statistics per region."""
    from workflows.run_change import run_change as run_change_workflow

    with plain_warnings():
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
            progress=not quiet,
            scheduler=scheduler,
            report=_echo,
        )
    echo_flags(outputs.flags)
