"""The ``geoseg`` command line: one module per command, loaded on demand.

Command bodies only parse options and call library or workflow functions.
Errors deriving from :class:`geoseg.errors.GeosegError` are printed as one
clear message with a non-zero exit status, never as a traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from geoseg.errors import GeosegError

# command name -> "module:attribute"; modules are imported only when used.
COMMANDS: dict[str, str] = {
    "predict": "geoseg.cli.predict:predict",
    "train": "geoseg.cli.train:train",
    "evaluate": "geoseg.cli.evaluate:evaluate",
    "count": "geoseg.cli.count:count",
    "panoptic": "geoseg.cli.panoptic:panoptic",
    "models": "geoseg.cli.models:models",
    "vectorize": "geoseg.cli.vectorize:vectorize",
    "change": "geoseg.cli.change:change",
    "catalog": "geoseg.cli.catalog:catalog",
    "run": "geoseg.cli.run:run",
    "run-change": "geoseg.cli.run:run_change",
    "jobs": "geoseg.cli.jobs:jobs",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Names of all subcommands, sorted."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import and return the subcommand ``cmd_name`` (None when unknown)."""
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=LazyGroup)
@click.version_option(package_name="geoseg")
def cli() -> None:
    """Land-use and deforestation maps from large satellite GeoTIFFs."""


def main(argv: list[str] | None = None) -> Any:
    """Run the command line; print geoseg errors without a traceback."""
    try:
        return cli.main(args=argv, prog_name="geoseg", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except GeosegError as error:
        click.echo(f"geoseg: error: {error}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
