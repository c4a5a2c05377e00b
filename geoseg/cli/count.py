"""``geoseg count --instances INSTANCES.gpkg --regions REGIONS.gpkg --out COUNTS.csv``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--instances",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Instance polygons (geoseg predict --polygons with an instance model): a GeoPackage "
    "with layer `instances`, or GeoParquet (.parquet).",
)
@click.option(
    "--regions",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Region polygons (any CRS), as for geoseg change.",
)
@click.option("--region-id-field", default=None, help="Field with the region ids [default: id].")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Table of region x class rows (.csv or .parquet).",
)
def count(instances: Path, regions: Path, region_id_field: str | None, out: Path) -> None:
    """Count the instances per region and sum their ground areas."""
    from geoseg.change.instance_counts import instance_counts
    from geoseg.change.regions import Regions, region_ids
    from geoseg.io.instances import read_instances
    from geoseg.io.tables import check_table_path, write_table
    from geoseg.io.vector import read_vector

    check_table_path(out)
    objects = read_instances(instances)
    frame = read_vector(regions)
    ids = region_ids(frame, region_id_field, str(regions))
    from rasterio.crs import CRS

    moved = frame.to_crs(objects.crs)
    crs = CRS.from_wkt(objects.crs.to_wkt())
    table = instance_counts(
        objects, Regions(ids, tuple(moved.geometry.to_numpy()), crs, str(regions))
    )
    write_table(table, out)
    click.echo(f"wrote {out}: {int(table['instances'].sum())} instances in {len(ids)} regions")
