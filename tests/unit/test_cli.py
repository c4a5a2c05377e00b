"""The command line's shape: lazy help, stated defaults, -v / -q, one-line warnings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from geoseg.cli import COMMANDS, cli, info, verbosity

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "dask", "distributed", "rasterio", "geopandas", "segmentation_models_pytorch")

_PROBE = """
import json, sys
import geoseg.cli
after_import = sorted(name for name in {heavy} if name in sys.modules)
from geoseg.cli import COMMANDS, main
loaded = {{}}
for args in [[], *([name] for name in COMMANDS)]:
    try:
        main([*args, "--help"])
    except SystemExit:
        pass
    loaded[" ".join(args)] = sorted(name for name in {heavy} if name in sys.modules)
print(json.dumps({{"import": after_import, "help": loaded}}))
"""


def test_help_imports_no_heavy_library() -> None:
    probe = _PROBE.format(heavy=repr(HEAVY))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["import"] == []
    # cumulative: after every command's help in one process, none was imported
    assert found["help"] == {name: [] for name in ["", *COMMANDS]}


def _commands() -> list[tuple[str, click.Command]]:
    """Every command and subcommand, with its full name."""
    context = click.Context(cli)
    found: list[tuple[str, click.Command]] = [("geoseg", cli)]
    pending = [(name, cli.get_command(context, name)) for name in sorted(COMMANDS)]
    while pending:
        name, command = pending.pop()
        assert command is not None
        found.append((name, command))
        if isinstance(command, click.Group):
            pending += [(f"{name} {sub}", command.commands[sub]) for sub in command.commands]
    return found


def test_summaries_are_the_commands_docstrings() -> None:
    context = click.Context(cli)
    for name, (_, summary) in COMMANDS.items():
        command = cli.get_command(context, name)
        assert command is not None and command.help is not None
        assert command.help.strip().splitlines()[0] == summary, name


def _states_default(option: click.Option) -> bool:
    text = option.help or ""
    return bool(
        option.is_flag
        or option.required
        or option.hidden
        or option.show_default
        or "default:" in text.lower()
    )


@pytest.mark.parametrize(("name", "command"), _commands(), ids=lambda value: str(value))
def test_every_option_states_its_default(name: str, command: click.Command) -> None:
    silent = [
        "/".join(param.opts)
        for param in command.params
        if isinstance(param, click.Option) and not _states_default(param)
    ]
    assert silent == [], f"geoseg {name}: options without a stated default"


def test_the_default_check_can_fail() -> None:
    quiet = click.Option(["--size"], default=3, help="Size.")
    assert not _states_default(quiet)
    assert _states_default(click.Option(["--size"], default=3, show_default=True))
    assert _states_default(click.Option(["--size"], help="Size [default: the card's]."))


@click.command()
def _probe_command() -> None:
    """Report what a command sees of -v / -q."""
    info("an info line")
    info("warning: a reported warning")
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # pytest turns warnings into errors
        warnings.warn("a python\nwarning", UserWarning, stacklevel=1)
    click.echo(f"verbosity {verbosity()}")
    environment = [
        os.environ.get(name, "") for name in ("GEOSEG_TRACEBACK", "DASK_LOGGING__DISTRIBUTED")
    ]
    click.echo(f"environment {environment}")


@pytest.fixture
def probe_cli() -> click.Group:
    cli.add_command(_probe_command, "probe")
    try:
        yield cli
    finally:
        cli.commands.pop("probe")


@pytest.mark.parametrize(
    ("flags", "level", "info_shown"), [([], 0, True), (["-q"], -1, False), (["-v"], 1, True)]
)
def test_verbosity_and_one_line_warnings(
    probe_cli: click.Group,
    flags: list[str],
    level: int,
    info_shown: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GEOSEG_TRACEBACK", raising=False)
    monkeypatch.delenv("DASK_LOGGING__DISTRIBUTED", raising=False)
    result = CliRunner().invoke(probe_cli, [*flags, "probe"])
    assert result.exit_code == 0, result.output
    seen = "['1', 'info']" if level == 1 else "['', '']"
    assert result.stdout == f"verbosity {level}\nenvironment {seen}\n"
    lines = result.stderr.splitlines()
    assert ("an info line" in lines) is info_shown
    assert "geoseg: warning: a reported warning" in lines
    assert "geoseg: warning: a python warning" in lines
    assert len(lines) == 2 + info_shown  # no source line of the warning
    # workers started by the command inherit -v; the caller's process is left as it was
    assert "GEOSEG_TRACEBACK" not in os.environ
    assert "DASK_LOGGING__DISTRIBUTED" not in os.environ


def test_verbose_and_quiet_exclude_each_other() -> None:
    result = CliRunner().invoke(cli, ["-v", "-q", "models", "list"])
    assert result.exit_code == 2 and "exclude each other" in result.stderr


def test_change_takes_a_region_id_of_the_catalog(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import contextlib

    import workflows.change
    import workflows.cluster
    from geoseg.catalog.stac import region_file

    given: list[Path] = []

    def fake_change_file(before: Path, after: Path, regions: Path, out: Path, **_: object) -> None:
        given.append(regions)
        raise KeyboardInterrupt  # stop here: the regions argument is what is checked

    monkeypatch.setattr(workflows.change, "change_file", fake_change_file)
    monkeypatch.setattr(workflows.cluster, "dask_client", lambda _: contextlib.nullcontext())
    arguments = ["change", "a.tif", "b.tif", "--out", str(tmp_path / "c.gpkg"), "--regions"]
    CliRunner().invoke(cli, [*arguments, "zion-park"])
    assert given == [region_file("zion-park")] and given[0].is_file()

    unknown = CliRunner().invoke(cli, [*arguments, "atlantis"])
    assert unknown.exit_code != 0 and given == [region_file("zion-park")]
    assert "neither a file nor a region of the catalog" in str(unknown.exception)
    assert "zion-park" in str(unknown.exception)
