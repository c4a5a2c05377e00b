"""The progress display: stage names, counts to their totals, an ETA, on a fake clock."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geoseg.cli import cli
from geoseg.predict.settings import InferenceSettings, PredictOutputs
from geoseg.report.progress import (
    SILENT,
    Progress,
    current,
    format_seconds,
    showing,
    stages,
)
from tests.clusters import started_client, started_cluster
from tests.predict_fixtures import make_model_dir
from tests.unit.test_change_workflow import FOREST, HEIGHT, WIDTH, _halves
from tests.unit.test_predict import DESCRIPTIONS, landscape
from workflows.change import change_file
from workflows.predict import predict_file
from workflows.vectorize import vectorize_file


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_failed_stage_leaves_no_final_line() -> None:
    log = io.StringIO()
    display = Progress.for_terminal(log, lines=True)
    with pytest.raises(RuntimeError), display.stage("predict", 40, "tiles") as stage:
        stage.advance(3)
        raise RuntimeError("a corrupt block")
    assert log.getvalue() == "predict: 40 tiles to do\n"
    clock, terminal = FakeClock(), Terminal()
    live = Progress.for_terminal(terminal)
    live.clock = clock
    with pytest.raises(KeyboardInterrupt), live.stage("vectorize", 5, "chunks") as stage:
        stage.advance(2)
        raise KeyboardInterrupt
    text = terminal.getvalue()
    assert text.endswith("\r") and "\n" not in text  # the live line is cleared, not ended
    assert text.rsplit("\r", 2)[-2].strip() == ""


def test_a_live_stage_counts_to_its_total_with_an_eta() -> None:
    clock, stream = FakeClock(), Terminal()
    display = Progress.for_terminal(stream)
    display.clock = clock
    assert display.live
    with display.stage("predict", 40, "tiles") as stage:
        clock.now += 10
        stage.advance(10)  # 10 of 40 in 10 s: 30 s left
        assert stage.eta() == pytest.approx(30.0)
        assert stage.line() == "predict  10/40 tiles  25%  0:10 elapsed  ETA 0:30"
        clock.now += 20
        stage.advance(30)
    frames = stream.getvalue().split("\r")
    assert frames[1].startswith("predict  0/40 tiles  0%  0:00 elapsed")
    assert "predict  10/40 tiles  25%  0:10 elapsed  ETA 0:30" in frames
    assert frames[-1].rstrip() == "predict  40/40 tiles  100%  0:30 elapsed"
    assert stream.getvalue().endswith("\n")


def test_live_redraws_at_most_every_refresh() -> None:
    clock, stream = FakeClock(), Terminal()
    display = Progress(stream, live=True, clock=clock, refresh_s=1.0)
    with display.stage("vectorize", 100, "chunks") as stage:
        for _ in range(50):
            clock.now += 0.01
            stage.advance()
        clock.now += 1.0
        stage.advance()
    # the first frame and one redraw after a second (the final frame is the same line)
    assert stream.getvalue().count("\r") == 2
    assert "vectorize  51/100 chunks  51%" in stream.getvalue()


def test_a_shorter_line_erases_the_longer_one_before_it() -> None:
    clock, stream = FakeClock(), Terminal()
    display = Progress(stream, live=True, clock=clock, refresh_s=0.0)
    with display.stage("change: counts", 9, "windows") as stage:
        clock.now += 1
        stage.advance()  # a line with an ETA
        clock.now += 1
        stage.advance(8)  # done: no ETA, so shorter
    before, last = stream.getvalue().rstrip("\n").split("\r")[-2:]
    assert len(last) == len(before) and "ETA" not in last


def test_stage_lines_for_a_log_one_at_the_start_and_one_at_the_end() -> None:
    clock, stream = FakeClock(), io.StringIO()
    display = Progress.for_terminal(stream, lines=True)
    display.clock = clock
    assert not display.live and display.shown
    with display.stage("predict", 12, "tiles") as stage:
        for _ in range(12):
            clock.now += 5
            stage.advance()
    with display.stage("vectorize", 3, "chunks") as stage:
        stage.advance(3)
    assert stream.getvalue().splitlines() == [
        "predict: 12 tiles to do",
        "predict: 12/12 tiles in 1:00",
        "vectorize: 3 chunks to do",
        "vectorize: 3/3 chunks in 0:00",
    ]


@pytest.mark.parametrize("quiet", [True, False])
def test_nothing_is_written_quiet_or_off_a_terminal_without_lines(quiet: bool) -> None:
    stream = Terminal() if quiet else io.StringIO()
    display = Progress.for_terminal(stream, quiet=quiet)
    with display.stage("predict", 3) as stage:
        stage.advance(3)
    assert stream.getvalue() == "" and not display.shown
    assert stage.done == stage.total == 3


def test_eta_is_unknown_before_the_first_unit_and_the_total_can_grow() -> None:
    clock = FakeClock()
    display = Progress(None, clock=clock)
    with display.stage("change: patches", 2, "chunks") as stage:
        assert stage.eta() is None
        clock.now += 4
        stage.advance()
        stage.grow(2)  # 1 of 4 in 4 s
        assert stage.eta() == pytest.approx(12.0)


def test_the_workflows_write_to_the_display_shown_for_the_block() -> None:
    shown = Progress(io.StringIO(), lines=True)
    with showing(shown):
        assert current() is shown
        assert stages(True) is shown
        assert stages(False) is SILENT
    assert current() is not shown


def test_seconds_are_minutes_and_hours() -> None:
    assert [format_seconds(s) for s in (0, 59.9, 61, 3600, 3725, -3)] == [
        "0:00",
        "0:59",
        "1:01",
        "1:00:00",
        "1:02:05",
        "0:00",
    ]


def test_predict_vectorize_and_change_feed_their_stages_to_the_display(
    tmp_path: Path, make_geotiff: Callable[..., Path], rng: np.random.Generator
) -> None:
    scene = make_geotiff(landscape(rng, 150, 130), name="scene.tif", descriptions=DESCRIPTIONS)
    model = make_model_dir(tmp_path / "model")
    before = (rng.random((HEIGHT, WIDTH)) < 0.6).astype(np.uint8)
    after = before.copy()
    after[10:20, 5:30] = 0
    dates = [
        make_geotiff(day, name=f"{n}.tif", nodata=255) for n, day in enumerate((before, after))
    ]
    stream = io.StringIO()
    with started_client(1, threads_per_worker=2) as client, showing(Progress(stream, lines=True)):
        result = predict_file(
            scene,
            model,
            InferenceSettings(chunk_size=64),
            PredictOutputs(tmp_path / "labels.tif"),
            client=client,
        )
        vectorize_file(result.labels, tmp_path / "polygons.gpkg", chunk_size=64, client=client)
        change_file(
            *dates,
            _halves(tmp_path),
            tmp_path / "change.gpkg",
            region_id_field="name",
            class_map=FOREST,
            chunk_size=20,
            client=client,
        )
    lines = stream.getvalue().splitlines()
    tiles = result.tiles
    assert lines[0] == f"predict: {tiles} tiles to do"
    assert lines[2] == "write: 1 COGs to do"
    assert lines[1].startswith(f"predict: {tiles}/{tiles} tiles in ")
    assert lines[3].startswith("write: 1/1 COGs in ")
    # 3 x 3 chunks of 64 px and the seam merge; 3 x 4 windows of 20 px in both change stages
    assert lines[4] == "vectorize: 10 chunks to do"
    assert lines[5].startswith("vectorize: 10/10 chunks in ")
    assert lines[6] == "change: patches: 12 chunks to do"
    assert lines[7].startswith("change: patches: 12/12 chunks in ")
    assert lines[8] == "change: counts: 12 windows to do"
    assert lines[9].startswith("change: counts: 12/12 windows in ")


@pytest.mark.parametrize("quiet", [False, True])
def test_the_command_line_shows_stage_lines_in_a_log_and_nothing_with_q(
    make_geotiff: Callable[..., Path], tmp_path: Path, quiet: bool
) -> None:
    labels = make_geotiff((np.arange(40 * 50).reshape(40, 50) // 333 % 3).astype(np.uint8))
    with started_cluster(1) as cluster:
        result = CliRunner().invoke(
            cli,
            [
                *(["-q"] if quiet else []),
                "vectorize",
                str(labels),
                "--out",
                str(tmp_path / "polygons.gpkg"),
                "--chunk-size",
                "16",
                "--scheduler",
                cluster.scheduler_address,
            ],
        )
    assert result.exit_code == 0, result.output
    # 3 x 4 chunks of 16 px and the seam merge; CliRunner's stderr is no terminal
    lines = result.stderr.splitlines()
    if quiet:
        assert lines == []
    else:
        assert lines[0] == "vectorize: 13 chunks to do"
        assert re.fullmatch(r"vectorize: 13/13 chunks in \d+:\d\d", lines[1])
