"""One progress display for every stage of a command: stage name, count, ETA.

The workflows open a :meth:`Progress.stage` per stage (``predict``,
``vectorize``, ``change``...) with the number of units it will do, and call
:meth:`Stage.advance` as Dask tasks finish; the display they write to is the
one :func:`showing` put in place for the block (the command line's), else the
default of :func:`current` (a live line on a terminal's stderr, else nothing).

On a terminal the display redraws one line at most every
:attr:`Progress.refresh_s` seconds::

    predict  38/125 tiles  30%  0:12 elapsed  ETA 0:28

and ends each stage with its final line. Elsewhere (a log file, a pipe) it
writes one line when a stage starts and one when it ends, or nothing at all
(``lines=False``). A stage that fails writes no final line (a live line is
cleared), so that the error is the last thing printed. The ETA is the
remaining units at the pace so far (``elapsed / done * (total - done)``).
The clock and the stream are arguments, so the display is tested without
sleeping. Pure: no Dask here.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO


def format_seconds(seconds: float) -> str:
    """``M:SS`` (or ``H:MM:SS`` from an hour), rounded down to the second."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


class Stage:
    """One stage of a command: its name, units done out of a total, and its clock."""

    def __init__(self, display: Progress, name: str, total: int, unit: str) -> None:
        self.display = display
        self.name = name
        self.total = max(0, total)
        self.unit = unit
        self.done = 0
        self.started = display.clock()
        self._drawn_at: float | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since the stage started."""
        return self.display.clock() - self.started

    def eta(self) -> float | None:
        """Seconds left at the pace so far; None before the first unit is done."""
        if self.done <= 0:
            return None
        return self.elapsed / self.done * max(0, self.total - self.done)

    def advance(self, count: int = 1) -> None:
        """Count ``count`` more units done (redrawn on a terminal, at most every refresh)."""
        self.done += count
        self.display.draw(self)

    def grow(self, count: int) -> None:
        """Add ``count`` units to the total (work found on the way)."""
        self.total += count
        self.display.draw(self)

    def line(self) -> str:
        """The stage's status line."""
        parts = [self.name, f"{self.done}/{self.total} {self.unit}"]
        if self.total:
            parts.append(f"{100 * min(self.done, self.total) // self.total}%")
        parts.append(f"{format_seconds(self.elapsed)} elapsed")
        eta = self.eta()
        if eta is not None and self.done < self.total:
            parts.append(f"ETA {format_seconds(eta)}")
        return "  ".join(parts)


class Progress:
    """Where the stages of a command are shown.

    Parameters
    ----------
    stream
        Where to write (the command line's stderr); None: nowhere.
    live
        Redraw a status line in place (a terminal).
    lines
        When not live: one line as each stage starts and ends.
    clock
        Seconds, monotonic (a fake in tests).
    refresh_s
        Least time between two redraws of a live line.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        live: bool = False,
        lines: bool = False,
        clock: Callable[[], float] = time.monotonic,
        refresh_s: float = 0.2,
    ) -> None:
        self.stream = stream
        self.live = live and stream is not None
        self.lines = lines and stream is not None and not self.live
        self.clock = clock
        self.refresh_s = refresh_s
        self._width = 0
        self._last = ""

    @classmethod
    def for_terminal(cls, stream: TextIO, *, quiet: bool = False, lines: bool = False) -> Progress:
        """Live on a terminal ``stream``, else stage lines if ``lines``; nothing if ``quiet``."""
        if quiet:
            return cls(None)
        return cls(stream, live=stream.isatty(), lines=lines)

    @property
    def shown(self) -> bool:
        """Whether anything is written."""
        return self.live or self.lines

    @contextlib.contextmanager
    def stage(self, name: str, total: int, unit: str = "tasks") -> Iterator[Stage]:
        """A stage of ``total`` units for the block; its final line is written at the end."""
        stage = Stage(self, name, total, unit)
        if self.lines:
            self._write(f"{name}: {total} {unit} to do\n")
        self.draw(stage, force=True)
        try:
            yield stage
        except BaseException:
            # a failed or interrupted stage leaves no final line: the error stands alone
            if self.live and self._width:
                self._write("\r" + " " * self._width + "\r")
            self._width = 0
            self._last = ""
            raise
        if self.live:
            self.draw(stage, force=True)
            self._write("\n")
            self._width = 0
            self._last = ""
        elif self.lines:
            self._write(
                f"{name}: {stage.done}/{stage.total} {unit} in {format_seconds(stage.elapsed)}\n"
            )

    def draw(self, stage: Stage, *, force: bool = False) -> None:
        """Redraw ``stage``'s line in place (live only), unless drawn under a refresh ago."""
        if not self.live:
            return
        now = self.clock()
        if not force and stage._drawn_at is not None and now - stage._drawn_at < self.refresh_s:
            return
        stage._drawn_at = now
        text = stage.line()
        if text == self._last:
            return
        self._last = text
        padding = " " * max(0, self._width - len(text))
        self._width = len(text)
        self._write(f"\r{text}{padding}")

    def _write(self, text: str) -> None:
        assert self.stream is not None
        self.stream.write(text)
        self.stream.flush()


SILENT = Progress(None)
"""A display that shows nothing."""

_CURRENT: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "geoseg_progress", default=None
)


def current() -> Progress:
    """The display of the block :func:`showing` runs, else a live line on a terminal's stderr."""
    shown = _CURRENT.get()
    if shown is not None:
        return shown
    return Progress.for_terminal(sys.stderr)


def stages(show: bool) -> Progress:
    """:func:`current` when ``show`` (a workflow's ``progress`` argument), else :data:`SILENT`."""
    return current() if show else SILENT


@contextlib.contextmanager
def showing(display: Progress) -> Iterator[Progress]:
    """Make ``display`` the one the workflows write their stages to, for the block."""
    token = _CURRENT.set(display)
    try:
        yield display
    finally:
        _CURRENT.reset(token)
