"""Terminal output for people watching long work: aligned tables and a progress line, by `rich`.

- `render_table` returns a string; the caller prints it. `rich` lays it out, counting terminal
  columns (wide East Asian characters take two, combining marks none), and the result is
  plain text: no colour, no escape codes, no trailing spaces.
- `Progress` shows a `rich` progress line redrawn in place on a terminal, and on anything else
  (a pipe, a CI log, a file) prints one plain line each time the step text changes, so logs
  keep no carriage returns or escape codes. It never starts a task or a thread (`rich`'s
  auto-refresh is off): it draws only when called, so the elapsed time it shows is as fresh
  as the last call.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from types import TracebackType
from typing import Self, TextIO

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.progress import BarColumn, ProgressColumn, TaskID, TextColumn
from rich.progress import Progress as RichProgress
from rich.table import Column, Table

from aaex_agents import Clock, SystemClock, UsageError

__all__ = ["Progress", "display_width", "render_table"]

_RULE_UNDER_HEADER = box.Box("    \n    \n -- \n    \n    \n    \n    \n    \n", ascii=True)
"""No borders, no column lines: only a rule of "-" under the header, plain in any log."""


def display_width(text: str) -> int:
    """Columns `text` takes in a terminal: wide East Asian characters 2, combining marks 0.

    Why not `len`: a table of store names in Japanese, or with accents written as combining
    marks, would otherwise lose its alignment.
    """
    return cell_len(text)


def _cell_text(value: object) -> str:
    # A line break inside a cell would break every column after it, so cells are one line.
    return "" if value is None else " ".join(str(value).splitlines())


def _is_number(value: object) -> bool:
    # bool is an int subclass, but True/False read as words, not quantities.
    return isinstance(value, int | float | Decimal | Fraction) and not isinstance(value, bool)


def _default_align(column: list[object]) -> str:
    values = [v for v in column if v is not None and v != ""]
    return "r" if values and all(_is_number(v) for v in values) else "l"


def _plain_console(stream: TextIO, width: int) -> Console:
    """A console that writes text as given: no markup, colour, emoji or highlighting."""
    return Console(file=stream, width=width, force_terminal=False, color_system=None,
                   markup=False, emoji=False, highlight=False)


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    align: str | None = None,
    title: str | None = None,
) -> str:
    r"""Lay out rows as text columns with a rule under the header, for people to read.

    Cells are shown with `str()` (None as empty), as plain text (``[bold]`` stays as typed).
    A column whose cells are all numbers is right-aligned so that digits line up; any other
    column is left-aligned. Format floats yourself (e.g. `f"{x:.1f}"`) and pass `align` when
    a column of formatted numbers should stay right-aligned. Widths count terminal columns, so
    wide and combining characters line up. Lines carry no trailing spaces.

    Args:
        headers: Column names; they set the number of columns.
        rows: One sequence of cells per row, each as long as `headers`.
        align: One letter per column, "l" (left) or "r" (right), e.g. "lrr"; None picks by
            content as above.
        title: A line printed above the table.

    Returns:
        The table as lines joined by "\n", with no final newline.

    Raises:
        ValueError: A row's length or `align` does not match the headers, or `align` has a
            letter other than "l" and "r".
    """
    columns = len(headers)
    for n, row in enumerate(rows):
        if len(row) != columns:
            raise ValueError(
                f"render_table: row {n} has {len(row)} cells but there are {columns} headers "
                f"{list(headers)}; give every row one cell per header (None for blank)"
            )
    if align is None:
        align = "".join(_default_align([row[i] for row in rows]) for i in range(columns))
    elif len(align) != columns or set(align) - {"l", "r"}:
        raise ValueError(
            f"render_table: align={align!r} for {columns} columns; pass one letter per "
            f"column, each 'l' or 'r', e.g. {'l' + 'r' * (columns - 1)!r}"
        )
    # Two spaces between columns: one of padding, one for the (blank) column line.
    table = Table(box=_RULE_UNDER_HEADER, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0),
                  header_style="")
    for header, letter in zip(headers, align, strict=True):
        table.add_column(_cell_text(header), justify="right" if letter == "r" else "left",
                         no_wrap=True)
    for row in rows:
        table.add_row(*(_cell_text(cell) for cell in row))
    out = io.StringIO()
    # Wide enough that nothing wraps: the table takes its natural width.
    _plain_console(out, width=1_000_000).print(table)
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    # The title is a line of its own, not rich's: rich would wrap it to the table's width.
    return "\n".join([title, *lines] if title else lines)


_MIN_REDRAW_S = 0.1
"""On a terminal, a count that moves less than a percent is redrawn at most this often (a new
status or a whole percent always redraws), so a loop that advances thousands of times costs a
few hundred writes rather than thousands."""


class Progress:
    r"""Progress of a count of items or of named steps, written to a text stream.

    On a terminal (`stream.isatty()`) the progress is one `rich` line redrawn in place, e.g.
    ``supply-chain demo ━━━━━━━━━━━━━━━━━━━━ 3/10 forecasting S01-S05 12.3 s``. On anything
    else a line is printed each time the status text changes, and never a "\r" or an escape
    code. Closing prints a last line with the elapsed seconds; as a context manager it closes on
    exit, saying "stopped" instead of "done" when the block raised. A call does a write or two
    and a flush and waits on nothing else, so it is safe in asyncio code; it owns no task,
    thread or stream (the caller closes the stream, if anyone does).

    Example::

        with Progress(total=len(steps), label="supply-chain demo") as progress:
            for step in steps:
                progress.update(status=step)
                run(step)
                progress.update(advance=1)

    Args:
        total: Items or steps expected; None when unknown (the bar is then left out).
        label: What the work is; leads every line.
        stream: Where to write; `sys.stderr` at the time of the call when None, so stdout
            stays clean for the output scripts read.
        clock: Source of time for the elapsed seconds; the system clock when None.
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        label: str = "",
        stream: TextIO | None = None,
        clock: Clock | None = None,
    ) -> None:
        if total is not None and total < 0:
            raise ValueError(f"Progress(total={total}): total must be 0 or more, or None")
        # Looked up now, not at import, so an app or test that swaps sys.stderr is honoured.
        stream = sys.stderr if stream is None else stream
        self.total = total
        self.label = label
        self.completed = 0
        self.status = ""
        self._clock = clock or SystemClock()
        self._started = self._clock.now()
        self._live = bool(getattr(stream, "isatty", lambda: False)())
        # Decided here, not by rich's environment rules (FORCE_COLOR...), so a pipe stays plain.
        self._console = Console(file=stream, force_terminal=self._live, markup=False,
                                emoji=False, highlight=False)
        self._task = TaskID(0)
        # Made now, so its elapsed time counts from here; it writes nothing until started.
        self._bar = self._live_line() if self._live else None
        self._shown = False
        self._last_draw = float("-inf")
        self._drawn_key: tuple[str, int] | None = None
        self._closed = False

    @property
    def elapsed(self) -> float:
        """Seconds since the progress was created (never negative if the clock steps back)."""
        return max(0.0, self._clock.now() - self._started)

    def __enter__(self) -> Self:
        self._check_open("enter")
        if self._live:
            self._draw()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._closed:
            self.close(failed=exc_type is not None)

    def update(
        self, *, advance: int = 0, completed: int | None = None, status: str | None = None
    ) -> None:
        """Move the count on and/or change the status text, then redraw or print.

        Args:
            advance: Items finished since the last call.
            completed: Items finished in all, instead of `advance`.
            status: What is being done now; None keeps the current text.

        Raises:
            UsageError: The progress is closed, or both `advance` and `completed` are given.
        """
        self._check_open("update")
        if completed is not None and advance:
            raise UsageError(
                "Progress.update: pass advance= (items since the last call) or completed= "
                "(items in all), not both"
            )
        self.completed = completed if completed is not None else self.completed + advance
        changed = status is not None and status != self.status
        if status is not None:
            self.status = status
        if self._live:
            if (self._draw_key() != self._drawn_key
                    or self._clock.now() - self._last_draw >= _MIN_REDRAW_S):
                self._draw()
        elif changed:
            self._print(self._plain_line())

    def log(self, line: str) -> None:
        """Print a line above the progress line without breaking it.

        Raises:
            UsageError: The progress is closed; print directly instead.
        """
        self._check_open("log")
        self._print(line)  # on a terminal, rich prints it above the live line and redraws

    def close(self, *, failed: bool = False) -> None:
        """Print the last line: "done" (or "stopped", if `failed`), the count and the seconds.

        Raises:
            UsageError: The progress is already closed.
        """
        self._check_open("close")
        self._closed = True
        if self._bar is not None and self._shown:
            self._bar.stop()  # transient: the live line is erased, the cursor shown again
        word = "stopped after" if failed else "done in"
        self._print(f"{self._prefix()}{self._count()} {word} {self.elapsed:.1f} s".strip())

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Progress {self.label!r} {self._count()} {state} {self.elapsed:.1f} s>"

    # --- drawing ---------------------------------------------------------------------------

    def _check_open(self, action: str) -> None:
        if self._closed:
            raise UsageError(
                f"Progress {self.label!r}: cannot {action} after close(); "
                "make a new Progress for new work"
            )

    def _prefix(self) -> str:
        return f"{self.label}: " if self.label else ""

    def _count(self) -> str:
        return f"{self.completed}/{self.total}" if self.total is not None else str(self.completed)

    def _plain_line(self) -> str:
        status = f" {self.status}" if self.status else ""
        return f"{self._prefix()}{self._count()}{status} ({self.elapsed:.1f} s)"

    def _print(self, line: str) -> None:
        self._console.print(line, soft_wrap=True)  # soft: a long line is not cut into two

    def _draw_key(self) -> tuple[str, int]:
        # What a redraw must not skip: a new status, and the count moving a whole percent.
        # With no total there is no percent, and the interval alone paces count redraws.
        if self.total:
            return self.status, 100 * self.completed // self.total
        return self.status, -1

    def _draw(self) -> None:
        if self._bar is None:
            return
        self._bar.update(self._task, completed=self.completed, status=self.status)
        if self._shown:
            self._bar.refresh()
        else:
            self._bar.start()  # draws the first frame
            self._shown = True
        self._drawn_key = self._draw_key()
        self._last_draw = self._clock.now()

    def _live_line(self) -> RichProgress:
        """The rich display: label, bar (with a total), count, status, elapsed seconds."""
        count = "{task.completed:.0f}" + ("/{task.total:.0f}" if self.total is not None else "")
        columns: list[ProgressColumn] = [
            TextColumn("{task.description}", markup=False),
            *([BarColumn(bar_width=20)] if self.total is not None else []),
            TextColumn(count, markup=False),
            # The status is cut, not wrapped, when the terminal is narrow: one line.
            TextColumn("{task.fields[status]}", markup=False,
                       table_column=Column(no_wrap=True, overflow="ellipsis")),
            TextColumn("{task.elapsed:.1f} s", markup=False)]
        bar = RichProgress(*columns, console=self._console, auto_refresh=False, transient=True,
                           redirect_stdout=False, redirect_stderr=False,
                           get_time=self._clock.now)
        self._task = bar.add_task(self.label, total=self.total, status=self.status)
        return bar
