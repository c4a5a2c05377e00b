"""``geoseg change``: per-region change statistics between two class maps."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from geoseg.change.loss import DEFAULT_MIN_LOSS_HA, DEFAULT_MIN_PROBABILITY, LossRule
from geoseg.cli import warn

if TYPE_CHECKING:
    from geoseg.change.classmap import ClassMap
    from geoseg.change.flags import Flag
    from workflows.change import ChangeResult


def loss_rule_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give a click command ``--min-probability`` and ``--min-loss-ha``, passed as one ``rule``.

    The command receives a :class:`~geoseg.change.loss.LossRule` (validated
    before any file is read); the defaults are the rule's.
    """

    @functools.wraps(command)
    def with_rule(min_probability: float, min_loss_ha: float, **options: Any) -> None:
        command(rule=LossRule(min_probability=min_probability, min_loss_ha=min_loss_ha), **options)

    with_rule = click.option(
        "--min-loss-ha",
        default=DEFAULT_MIN_LOSS_HA,
        show_default=True,
        type=float,
        help="Minimum mapping unit: smaller loss and gain patches are not counted.",
    )(with_rule)
    with_rule = click.option(
        "--min-probability",
        default=DEFAULT_MIN_PROBABILITY,
        show_default=True,
        type=float,
        help="Probability a loss or gain needs at each date (forest, then non-forest).",
    )(with_rule)
    return with_rule


def _class_map(value: str | None) -> ClassMap | None:
    from geoseg.change.classmap import load_class_map

    return None if value is None else load_class_map(value)


def _class_ids(
    context: click.Context, parameter: click.Parameter, values: tuple[str, ...]
) -> list[int]:
    try:
        return [int(part) for value in values for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected class ids like 4 or 4,5, got {values}") from None


@click.command()
@click.argument("before", type=click.Path(path_type=Path))
@click.argument("after", type=click.Path(path_type=Path))
@click.option(
    "--regions",
    "regions",
    required=True,
    help="Vector file of region polygons (GeoPackage, shapefile...), or a region id of the "
    "embedded catalog (geoseg catalog list --collection regions).",
)
@click.option(
    "--region-layer", default=None, help="Layer of the region file [default: its only layer]."
)
@click.option(
    "--region-id-field",
    default=None,
    help="Field holding region ids (default: 'id', else feature numbers).",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="GeoPackage to write.")
@click.option(
    "--stats",
    default=None,
    type=click.Path(path_type=Path),
    help="Table of region x class rows (.csv or .parquet); transitions and regions beside it "
    "[default: none].",
)
@click.option(
    "--forest-classes",
    multiple=True,
    callback=_class_ids,
    help="Class ids counted as forest: 4 or 4,5 (repeatable; default: the class map's).",
)
@click.option(
    "--class-map",
    default=None,
    help="Class map YAML or preset (prodes, hansen-loss, hansen-treecover30, forest) "
    "[default: the class names geoseg predict records in each raster].",
)
@click.option(
    "--before-class-map", default=None, help="Class map of BEFORE only [default: --class-map]."
)
@click.option(
    "--after-class-map", default=None, help="Class map of AFTER only [default: --class-map]."
)
@click.option(
    "--before-probabilities",
    default=None,
    type=click.Path(path_type=Path),
    help="Per-class probabilities of BEFORE (geoseg predict --probabilities) [default: none].",
)
@click.option(
    "--after-probabilities",
    default=None,
    type=click.Path(path_type=Path),
    help="Per-class probabilities of AFTER; without both, the class maps count as certain "
    "[default: none].",
)
@loss_rule_options
@click.option(
    "--mask",
    "masks",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Raster of pixels to leave out at both dates (non-zero = masked; repeatable) "
    "[default: none].",
)
@click.option(
    "--later",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Class map of a date after AFTER (repeatable, in time order): confirms losses "
    "[default: none].",
)
@click.option(
    "--before-date",
    default=None,
    type=click.DateTime(["%Y-%m-%d"]),
    help="Acquisition date of BEFORE (YYYY-MM-DD), for the season flag [default: unknown].",
)
@click.option(
    "--after-date",
    default=None,
    type=click.DateTime(["%Y-%m-%d"]),
    help="Acquisition date of AFTER (YYYY-MM-DD), for the season flag [default: unknown].",
)
@click.option(
    "--before-instances",
    default=None,
    type=click.Path(path_type=Path),
    help="Instance polygons of BEFORE (geoseg predict --polygons with an instance model; "
    ".gpkg or .parquet): instances per region and class go into an 'instances' table "
    "[default: none].",
)
@click.option(
    "--after-instances",
    default=None,
    type=click.Path(path_type=Path),
    help="Instance polygons of AFTER (give both or neither) [default: none].",
)
@click.option("--chunk-size", default=4096, show_default=True, type=int, help="Window size.")
@click.option("--scheduler", default=None, help="Dask scheduler address (default: local).")
def change(
    before: Path,
    after: Path,
    regions: str,
    region_layer: str | None,
    region_id_field: str | None,
    out: Path,
    stats: Path | None,
    forest_classes: list[int],
    class_map: str | None,
    before_class_map: str | None,
    after_class_map: str | None,
    before_probabilities: Path | None,
    after_probabilities: Path | None,
    rule: LossRule,
    masks: tuple[Path, ...],
    later: tuple[Path, ...],
    before_date: datetime | None,
    after_date: datetime | None,
    before_instances: Path | None,
    after_instances: Path | None,
    chunk_size: int,
    scheduler: str | None,
) -> None:
    """Compare class maps BEFORE and AFTER per region: areas, IoU, transitions, deforestation."""
    if (before_instances is None) != (after_instances is None):
        raise click.UsageError(
            "give instance polygons for both dates (--before-instances and --after-instances) "
            "or for neither"
        )
    from geoseg.catalog.stac import region_file
    from workflows.change import change_file
    from workflows.cluster import dask_client

    both_dates, before_map, after_map = (
        _class_map(class_map),
        _class_map(before_class_map),
        _class_map(after_class_map),
    )
    with dask_client(scheduler) as client:
        result = change_file(
            before,
            after,
            region_file(regions),
            out,
            region_layer=region_layer,
            region_id_field=region_id_field,
            stats=stats,
            forest_classes=forest_classes or None,
            chunk_size=chunk_size,
            client=client,
            class_map=both_dates,
            before_class_map=before_map,
            after_class_map=after_map,
            before_probabilities=before_probabilities,
            after_probabilities=after_probabilities,
            rule=rule,
            masks=masks,
            later=later,
            dates=(before_date, after_date),
            instances=None
            if before_instances is None or after_instances is None
            else (before_instances, after_instances),
        )
    summary = result.statistics.regions
    click.echo(
        f"{out}: {len(summary)} regions, {summary.loss_ha.sum():.2f} ha forest loss "
        f"({len(result.deforestation)} patches of >= {rule.min_loss_ha:g} ha), "
        f"{summary.gain_ha.sum():.2f} ha gain, net {summary.net_change_ha.sum():+.2f} ha, "
        f"on the common grid {result.grid.crs} {result.grid.height}x{result.grid.width} px"
    )
    if result.instances is not None:
        click.echo(
            f"{out}: instances {int(result.instances.instances_before.sum())} before, "
            f"{int(result.instances.instances_after.sum())} after (table 'instances')"
        )
    for path in result.tables:
        click.echo(f"{path}: written")
    item = _write_item(result, before, after, regions, (before_date, after_date))
    click.echo(f"{item}: written")
    echo_flags(result.flags)


def _write_item(
    result: ChangeResult,
    before: Path,
    after: Path,
    regions: str,
    dates: tuple[datetime | None, datetime | None],
) -> Path:
    """The STAC Item of the change outputs, on the common grid, dated by the two dates."""
    from datetime import UTC

    from geoseg.io.stac import write_output_item
    from geoseg.report.stac import OutputAsset, OutputClass

    assets = {"change": OutputAsset(result.out, ("data",), "change layers")}
    for path in result.tables:
        assets[path.name.replace(".", "_")] = OutputAsset(path, ("data",), "statistics table")
    known = [moment for moment in dates if moment is not None]
    return write_output_item(
        result.out,
        assets,
        grid=result.grid,
        processed=datetime.now(UTC),
        start=min(known) if known else None,
        end=max(known) if known else None,
        lineage=f"geoseg change: class map {before} (before) against {after} (after) over "
        f"the regions {regions}",
        classes=[OutputClass(spec.id, spec.name) for spec in result.classes],
    )


def echo_flags(flags: Sequence[Flag], limit: int = 8) -> None:
    """One warning line per flag on stderr, the run's first, cut short after ``limit``."""
    for flag in flags[:limit]:
        warn(f"{flag.where}: {flag.message}")
    if len(flags) > limit:
        warn(f"and {len(flags) - limit} more flags (the 'flags' column of the regions)")
