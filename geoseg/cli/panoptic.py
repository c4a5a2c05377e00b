"""``geoseg panoptic --classes CLASSES.tif --instances INSTANCES.tif --out PANOPTIC.tif``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--classes",
    "semantic",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Class map of a semantic model (stuff), e.g. from geoseg predict.",
)
@click.option(
    "--instances",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Instance raster of an instance model (things), on the same grid.",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Panoptic COG.")
def panoptic(semantic: Path, instances: Path, out: Path) -> None:
    """Combine stuff classes and thing instances into one panoptic raster.

    Bands instance_id (0 for stuff) and class_id; instances win over the class
    map, whose nodata stays 255 (void).
    """
    from workflows.panoptic import combine_files

    classes = combine_files(semantic, instances, out)
    click.echo(f"wrote {out} ({classes} classes)")
