"""The ``geoseg`` command line: one module per command, loaded on demand.

Command bodies only parse options and call library or workflow functions.
Every failure is printed as one line, ``geoseg: error: ...``, never as a
traceback (``GEOSEG_TRACEBACK=1`` adds it, for bug reports). Exit status: 2
for bad input or options (a :class:`geoseg.errors.GeosegError` whose
``exit_code`` says so, or a usage error), 1 for any other failure, 130 after
Ctrl-C.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import traceback
from typing import Any

import click

from geoseg.errors import DISK_FULL_ERRNOS, FAILURE_EXIT, GeosegError

QUIET_DASK = {"DASK_LOGGING__DISTRIBUTED": "critical"}
"""Dask's own log lines are off in the command line, whose failures are one line each;
set ``DASK_LOGGING__DISTRIBUTED=info`` (read by the client and the local workers) for them."""

TRACEBACK_ENV = "GEOSEG_TRACEBACK"
"""Set to 1 to print the traceback of a failure after its one-line message."""

INTERRUPTED_EXIT = 130

# command name -> "module:attribute"; modules are imported only when used.
COMMANDS: dict[str, str] = {
    "predict": "geoseg.cli.predict:predict",
    "train": "geoseg.cli.train:train",
    "evaluate": "geoseg.cli.evaluate:evaluate",
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
    # PROJ never downloads grids unless the user asks (PROJ_NETWORK=ON); workers inherit it
    os.environ.setdefault("PROJ_NETWORK", "OFF")


def _with_notes(text: str, error: BaseException) -> str:
    """``text`` followed by the error's notes (what became of the work folder...), on one line."""
    notes = [note for note in getattr(error, "__notes__", ()) if note]
    return "; ".join([text, *notes]).replace("\n", " ")


def error_line(error: BaseException) -> str:
    """The one line that reports ``error`` (without the ``geoseg: error:`` prefix)."""
    if isinstance(error, GeosegError):
        return _with_notes(str(error), error)
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        reason = error.strerror or str(error)
        if error.errno in DISK_FULL_ERRNOS:
            reason = f"no space left on device ({reason}); free some space and run again"
        elif error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            reason = f"{reason}; choose a writable folder"
        return _with_notes(f"{where}{reason}", error)
    return _with_notes(
        f"internal error ({type(error).__name__}: {error}); please report it with the "
        f"traceback that {TRACEBACK_ENV}=1 prints",
        error,
    )


def _fail(error: BaseException, text: str, code: int) -> None:
    click.echo(text, err=True)
    if os.environ.get(TRACEBACK_ENV) == "1":
        traceback.print_exception(error, file=sys.stderr)
    sys.exit(code)


def main(argv: list[str] | None = None) -> Any:
    """Run the command line; print every failure as one line and exit with its status."""
    for name, value in QUIET_DASK.items():
        os.environ.setdefault(name, value)
    try:
        return cli.main(args=argv, prog_name="geoseg", standalone_mode=False)
    except click.exceptions.Abort as error:  # click's form of Ctrl-C (the cause holds the notes)
        interrupt = error.__cause__ or error
        _fail(interrupt, _with_notes("geoseg: interrupted", interrupt), INTERRUPTED_EXIT)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except GeosegError as error:
        _fail(error, f"geoseg: error: {error_line(error)}", error.exit_code)
    except KeyboardInterrupt as error:
        _fail(error, _with_notes("geoseg: interrupted", error), INTERRUPTED_EXIT)
    except Exception as error:  # a failure nobody translated: one line, not a traceback
        _fail(error, f"geoseg: error: {error_line(error)}", FAILURE_EXIT)
