"""``geoseg vectorize``: class-map GeoTIFF to seam-free GeoPackage or GeoParquet polygons."""

from __future__ import annotations

from pathlib import Path

import click

from geoseg.labels import MAX_CLASS_ID


def _class_ids(
    context: click.Context, parameter: click.Parameter, values: tuple[str, ...]
) -> list[int] | None:
    """``--classes 1,4 --classes 7`` -> ``[1, 4, 7]`` (None when not given)."""
    ids: list[int] = []
    for value in values:
        for part in value.split(","):
            if not part.strip().isdigit() or int(part) > MAX_CLASS_ID:
                raise click.BadParameter(f"class ids are integers 0-{MAX_CLASS_ID}, got {part!r}")
            ids.append(int(part))
    return ids or None


@click.command()
@click.argument("labels", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="OUT.gpkg (GeoPackage) or OUT.parquet (GeoParquet 1.1, one layer).",
)
@click.option(
    "--probabilities",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Per-class probability raster on the same grid: adds mean_probability "
    "[default: none, no mean_probability column].",
)
@click.option(
    "--classes",
    multiple=True,
    callback=_class_ids,
    help="Only these class ids: 4 or 4,5 (repeatable; default: every class).",
)
@click.option(
    "--min-area-m2",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Drop polygons smaller than this ground area (after the seam merge).",
)
@click.option(
    "--simplify-m",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Topology-preserving simplification tolerance in metres.",
)
@click.option(
    "--mask",
    "masks",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Raster of pixels not to polygonize (band 1 non-zero = masked, read onto the class "
    "map's grid; repeatable) [default: none].",
)
@click.option("--layer", help="Layer name (default: the raster's file name).")
@click.option("--layer-per-class", is_flag=True, help="One layer per class.")
@click.option(
    "--chunk-size",
    type=click.IntRange(min=16),
    default=4096,
    show_default=True,
    help="Pixels per side of a polygonization task; results do not depend on it.",
)
@click.option("--scheduler", help="Dask scheduler address (default: a local cluster).")
def vectorize(
    labels: Path,
    out: Path,
    probabilities: Path | None,
    classes: list[int] | None,
    min_area_m2: float,
    simplify_m: float,
    masks: tuple[Path, ...],
    layer: str | None,
    layer_per_class: bool,
    chunk_size: int,
    scheduler: str | None,
) -> None:
    """Polygonize the class map LABELS into GeoPackage layers, seam-free and out of core."""
    from geoseg.io.vector import polygon_format

    polygon_format(out)  # an unknown suffix is refused before the cluster starts

    from workflows.cluster import dask_client
    from workflows.vectorize import vectorize_file

    with dask_client(scheduler) as client:
        counts = vectorize_file(
            labels,
            out,
            layer=layer,
            probabilities=probabilities,
            classes=classes,
            min_area_m2=min_area_m2,
            simplify_m=simplify_m,
            layer_per_class=layer_per_class,
            chunk_size=chunk_size,
            client=client,
            masks=masks,
        )
    for name, count in counts.items():
        click.echo(f"{out}: layer {name}: {count} polygons")
    click.echo(f"wrote {_write_item(labels, out)}")


def _write_item(labels: Path, out: Path) -> Path:
    """The STAC Item of the polygons, on the class map's grid and with its classes."""
    from datetime import UTC, datetime

    from geoseg.io.raster import read_info
    from geoseg.io.stac import write_output_item
    from geoseg.labels import CLASS_NAMES_TAG, MODEL_TAG, colours_of_table, parse_class_names
    from geoseg.report.stac import OutputAsset, OutputClass

    info = read_info(labels)
    tag = info.tags.get(CLASS_NAMES_TAG)
    names = {} if tag is None else parse_class_names(tag, str(labels))
    colours = colours_of_table(info.colormap or {})
    model = info.tags.get(MODEL_TAG, "")
    return write_output_item(
        out,
        {"polygons": OutputAsset(out, ("data",), "class polygons")},
        grid=info.grid,
        processed=datetime.now(UTC),
        lineage=f"geoseg vectorize: polygons of the class map {labels}"
        + (f" (model {model})" if model else ""),
        classes=[OutputClass(key, name, colours.get(key)) for key, name in sorted(names.items())],
    )
