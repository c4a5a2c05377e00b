"""``geoseg run`` and ``geoseg run-change``: placeholders until their issue lands."""

from __future__ import annotations

import click

from geoseg.errors import GeosegError


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(args: tuple[str, ...]) -> None:
    """Not implemented yet."""
    raise GeosegError("'geoseg run' is not implemented yet")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_change(args: tuple[str, ...]) -> None:
    """Not implemented yet."""
    raise GeosegError("'geoseg run-change' is not implemented yet")
