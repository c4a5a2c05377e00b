"""The ``geoseg`` command line: one module per command, loaded on demand.

Command bodies only parse options and call library or workflow functions.
Every failure is printed as one line, ``geoseg: error: ...``, never as a
traceback (``GEOSEG_TRACEBACK=1`` adds it, for bug reports). Exit status: 2
for bad input or options (a :class:`geoseg.errors.GeosegError` whose
``exit_code`` says so, or a usage error), 1 for any other failure, 130 after
Ctrl-C.

``geoseg --help`` and ``geoseg CMD --help`` import no heavy library: the
group lists commands from :data:`COMMANDS` without importing them, and
command modules import torch, Dask, rasterio or geopandas inside their bodies.
Warnings print as one ``geoseg: warning: ...`` line. ``-q`` hides the
progress display (:mod:`geoseg.report.progress`) and info lines; ``-v``
shows Dask's log lines and the traceback of a failure.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import sys
import traceback
import warnings
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

import click

from geoseg.errors import DISK_FULL_ERRNOS, FAILURE_EXIT, GeosegError
from geoseg.report.progress import Progress, showing

QUIET_DASK = {"DASK_LOGGING__DISTRIBUTED": "critical"}
"""Dask's own log lines are off in the command line, whose failures are one line each;
set ``DASK_LOGGING__DISTRIBUTED=info`` (read by the client and the local workers) for them."""

TRACEBACK_ENV = "GEOSEG_TRACEBACK"
"""Set to 1 to print the traceback of a failure after its one-line message."""

INTERRUPTED_EXIT = 130

_RUN = {"verbose": False}
"""Whether the command line in progress was given ``-v`` (read when it fails)."""

VERBOSITY_KEY = "geoseg.verbosity"
"""Key of the ``-v`` / ``-q`` level (-1, 0 or 1) in the root click context's ``meta``."""

COMMANDS: dict[str, tuple[str, str]] = {
    "predict": (
        "geoseg.cli.predict:predict",
        "Segment INPUT.tif with a model and write a class-map COG to --out.",
    ),
    "train": (
        "geoseg.cli.train:train",
        "Train a segmentation model and write its model directory.",
    ),
    "evaluate": (
        "geoseg.cli.evaluate:evaluate",
        "Confusion matrix, per-class IoU / Dice / F1, mean IoU and overall accuracy.",
    ),
    "count": (
        "geoseg.cli.count:count",
        "Count the instances per region and sum their ground areas.",
    ),
    "panoptic": (
        "geoseg.cli.panoptic:panoptic",
        "Combine stuff classes and thing instances into one panoptic raster.",
    ),
    "models": ("geoseg.cli.models:models", "The shipped models and their model cards."),
    "vectorize": (
        "geoseg.cli.vectorize:vectorize",
        "Polygonize the class map LABELS into GeoPackage layers, seam-free and out of core.",
    ),
    "change": (
        "geoseg.cli.change:change",
        "Compare class maps BEFORE and AFTER per region: areas, IoU, transitions, deforestation.",
    ),
    "catalog": (
        "geoseg.cli.catalog:catalog",
        "List and search the scene catalog (embedded STAC catalog by default).",
    ),
    "run": (
        "geoseg.cli.run:run",
        "Segment the catalog's scenes over a bbox; write GeoPackage, label COG and quicklook.",
    ),
    "run-change": (
        "geoseg.cli.run:run_change",
        "Segment both dates on one grid with one model, then change statistics per region.",
    ),
    "jobs": ("geoseg.cli.jobs:jobs", "Scheduled, incremental change-detection jobs."),
}
"""Command name -> (``module:attribute``, the first line of its help).

The module is imported only when the command runs or its own help is asked;
``geoseg --help`` lists the commands from the second field (a test checks it
against each command's docstring).
"""


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Names of all subcommands, sorted."""
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import and return the subcommand ``cmd_name`` (None when unknown)."""
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        target = COMMANDS[cmd_name][0]
        module_name, attribute = target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the subcommands with the summaries of :data:`COMMANDS`, importing none."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [
            (name, click.Command(name, help=summary).get_short_help_str(limit))
            for name, (_, summary) in sorted(COMMANDS.items())
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(package_name="geoseg")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Show Dask's log lines and the traceback of a failure (as GEOSEG_TRACEBACK=1).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress display or info lines.")
@click.pass_context
def cli(context: click.Context, verbose: bool, quiet: bool) -> None:
    """Land-use and deforestation maps from large satellite GeoTIFFs."""
    if verbose and quiet:
        raise click.UsageError("-v and -q exclude each other")
    context.meta[VERBOSITY_KEY] = 1 if verbose else -1 if quiet else 0
    context.with_resource(plain_warnings())  # for every command, until it returns
    # the stages of every command: a live line on a terminal, a line per stage in a log
    context.with_resource(showing(Progress.for_terminal(sys.stderr, quiet=quiet, lines=True)))
    _RUN["verbose"] = verbose
    if verbose:  # before any command imports Dask or starts workers, which inherit it
        # set for this command only: a Python caller's process is left as it was
        context.with_resource(_scoped_environment([TRACEBACK_ENV, "DASK_LOGGING__DISTRIBUTED"]))
        os.environ[TRACEBACK_ENV] = "1"
        os.environ["DASK_LOGGING__DISTRIBUTED"] = "info"
    # PROJ never downloads grids unless the user asks (PROJ_NETWORK=ON); workers inherit it
    os.environ.setdefault("PROJ_NETWORK", "OFF")


def verbosity() -> int:
    """-1 after ``geoseg -q``, 1 after ``geoseg -v``, else 0 (also outside a command line)."""
    context = click.get_current_context(silent=True)
    if context is None:
        return 0
    level: int = context.find_root().meta.get(VERBOSITY_KEY, 0)
    return level


def show_progress() -> bool:
    """Whether to show the stages, unless ``-q``: a live line on a terminal, else a line each.

    The display itself is :func:`geoseg.report.progress.current`, which the
    group sets for every command.
    """
    return verbosity() >= 0


def warn(message: str) -> None:
    """Print ``message`` as one ``geoseg: warning:`` line on stderr (also under ``-q``)."""
    click.echo(f"geoseg: warning: {message}", err=True)


def info(message: str) -> None:
    """Print an info line on stderr, unless ``-q``; a ``warning: ...`` line goes to :func:`warn`.

    The workflows report stages and warnings through one callable; this is
    the command line's.
    """
    if message.startswith("warning: "):
        warn(message.removeprefix("warning: "))
    elif verbosity() >= 0:
        click.echo(message, err=True)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Print a Python warning as one ``geoseg: warning:`` line (no source line)."""
    warn(str(message).replace("\n", " "))


@contextlib.contextmanager
def plain_warnings() -> Iterator[None]:
    """Print warnings as one ``geoseg: warning:`` line each while the block runs."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        yield


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
    if os.environ.get(TRACEBACK_ENV) == "1" or _RUN["verbose"]:
        traceback.print_exception(error, file=sys.stderr)
    sys.exit(code)


@contextlib.contextmanager
def _scoped_environment(names: Iterable[str]) -> Iterator[None]:
    """Restore ``names`` in ``os.environ`` afterwards.

    A command line called from Python (tests, notebooks) leaves the process as
    it found it.
    """
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(argv: list[str] | None = None) -> Any:
    """Run the command line; print every failure as one line and exit with its status.

    Without ``argv`` (the program ``geoseg`` itself) the process exits quickly
    afterwards (:func:`quick_exit`).
    """
    names = (TRACEBACK_ENV, "DASK_LOGGING__DISTRIBUTED", "PROJ_NETWORK", *QUIET_DASK)
    try:
        with _scoped_environment(names):
            return _main(argv)
    finally:
        if argv is None:
            quick_exit()


def quick_exit() -> None:
    """Spare the ending process the garbage collections of its finalization.

    Python collects the garbage of the whole heap several times as it exits;
    with torch, Dask and GDAL loaded that took 2.3-3.2 s after the command had
    finished (measured on a loaded 2-core machine), against 0.5 s with the
    objects still alive frozen out of the collector's sight (their memory goes
    back to the system with the process). Only for a process about to end.
    """
    import gc

    gc.disable()
    gc.freeze()


def _main(argv: list[str] | None) -> Any:
    _RUN["verbose"] = False
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
