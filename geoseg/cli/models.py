"""``geoseg models``: placeholder until its issue lands."""

from __future__ import annotations

import click

from geoseg.errors import GeosegError


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def models(args: tuple[str, ...]) -> None:
    """Not implemented yet."""
    raise GeosegError("'geoseg models' is not implemented yet")
