"""Terminal output: tables line up, progress redraws on a terminal and stays plain elsewhere."""

from __future__ import annotations

import io
import re
from decimal import Decimal

import pytest

from aaex_agents import UsageError
from aaex_agents.testing import ManualClock
from marketplace.cli.console import Progress, display_width, render_table

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
"""Escape codes (colour, cursor moves, erase line), removed to read what a terminal shows."""


class TerminalDouble(io.StringIO):
    """Test double for a terminal: a StringIO that says it is a TTY."""

    def isatty(self) -> bool:
        return True


# --- render_table ------------------------------------------------------------------------


def test_numbers_right_strings_left_with_a_rule_under_the_header() -> None:
    table = render_table(
        ["store", "units", "price", "note"],
        [("S01", 7, 1.5, "ok"), ("S10", 1200, Decimal("12.25"), None), ("S2", -3, 0.0, True)],
    )
    assert table.splitlines() == [
        "store  units  price  note",
        "-------------------------",
        "S01        7    1.5  ok",
        "S10     1200  12.25",
        "S2        -3    0.0  True",
    ]


def test_title_goes_above_and_align_overrides_the_default() -> None:
    table = render_table(["id", "cost"], [("a", "1.0 km"), ("bb", "12.5 km")],
                         align="lr", title="Routes")
    assert table.splitlines() == ["Routes", "id     cost", "-----------", "a    1.0 km",
                                  "bb  12.5 km"]
    wide = "Routes: 12.5 km in total, feasible"
    assert render_table(["a"], [(1,)], title=wide).splitlines() == [wide, "a", "-", "1"]


def test_wide_and_combining_characters_keep_columns_aligned() -> None:
    table = render_table(["name", "n"], [("東京", 1), ("Zu\u0308rich", 22), ("ab", 333)])
    lines = table.splitlines()
    # Every line's second column ends in the same terminal column.
    assert {display_width(line) for line in lines} == {len("Zürich") + 2 + 3}
    assert lines[2] == "東京      1"
    assert display_width("東京") == 4 and display_width("Zu\u0308rich") == 6


def test_plain_text_one_line_per_row_and_no_trailing_spaces() -> None:
    table = render_table(["a", "b"], [("x\ny", ""), ("long text", ""), ("[bold]z[/]", ":smile:")])
    assert table.splitlines()[2] == "x y"
    assert table.splitlines()[4] == "[bold]z[/]  :smile:"  # no markup, no emoji, no colour
    assert all(line == line.rstrip() for line in table.splitlines())
    assert len(table.splitlines()) == 5 and "\x1b" not in table


def test_an_empty_table_is_header_and_rule() -> None:
    assert render_table(["seq", "kind"], []) == "seq  kind\n---------"


def test_mismatched_rows_and_align_are_named() -> None:
    with pytest.raises(ValueError, match=r"row 1 has 1 cells but there are 2 headers"):
        render_table(["a", "b"], [(1, 2), (3,)])
    with pytest.raises(ValueError, match=r"align='lx' for 2 columns.*'lr'"):
        render_table(["a", "b"], [(1, 2)], align="lx")


# --- Progress, not a terminal --------------------------------------------------------------


def test_a_pipe_gets_one_plain_line_per_status_and_a_final_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich would take a pipe for a terminal with it
    stream, clock = io.StringIO(), ManualClock()
    with Progress(total=4, label="demo", stream=stream, clock=clock) as progress:
        progress.update(status="forecasting")
        clock.advance(1.5)
        progress.update(advance=1)  # same status: no line
        progress.update(advance=1, status="forecasting")  # unchanged text: no line
        progress.update(advance=1, status="routing")
        progress.log("plan: 3 routes")
        clock.advance(2.0)
        progress.update(advance=1)
    assert stream.getvalue().splitlines() == [
        "demo: 0/4 forecasting (0.0 s)",
        "demo: 3/4 routing (1.5 s)",
        "plan: 3 routes",
        "demo: 4/4 done in 3.5 s",
    ]
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


def test_a_failed_block_says_stopped_and_the_error_passes_through() -> None:
    stream = io.StringIO()
    with pytest.raises(KeyError), Progress(total=3, label="demo", stream=stream) as progress:
        progress.update(advance=1, status="routing")
        raise KeyError("S01")
    assert stream.getvalue().splitlines()[-1].startswith("demo: 1/3 stopped after ")


def test_closed_progress_refuses_reuse_and_repr_shows_state() -> None:
    progress = Progress(label="count", stream=io.StringIO(), clock=ManualClock())
    progress.update(completed=5)
    assert repr(progress) == "<Progress 'count' 5 open 0.0 s>"
    progress.close()
    assert repr(progress) == "<Progress 'count' 5 closed 0.0 s>"
    with pytest.raises(UsageError, match="cannot update after close"):
        progress.update(advance=1)
    with pytest.raises(UsageError, match="not both"):
        Progress(stream=io.StringIO()).update(advance=1, completed=2)


# --- Progress on a terminal --------------------------------------------------------------


def test_a_terminal_gets_one_line_redrawn_in_place() -> None:
    stream, clock = TerminalDouble(), ManualClock()
    with Progress(total=10, label="demo", stream=stream, clock=clock) as progress:
        clock.advance(12.34)
        progress.update(advance=3, status="forecasting [S01-S05]")
        progress.update(advance=7, status="routing")
    out = stream.getvalue()
    frames = [ANSI.sub("", frame) for frame in out.split("\r")]
    # rich's line: label, bar, count, status (as typed, no markup), elapsed seconds.
    assert any(f.startswith("demo ") and f.endswith(" 3/10 forecasting [S01-S05] 12.3 s")
               for f in frames)
    assert any(f.startswith("demo ") and " 10/10 routing 12.3 s" in f for f in frames)
    # Each redraw returns to the line's start and erases it: one line, redrawn in place.
    assert out.count("\r\x1b[2K") >= 2
    assert out.endswith("demo: 10/10 done in 12.3 s\n")


def test_log_on_a_terminal_prints_above_and_redraws_the_bar() -> None:
    stream = TerminalDouble()
    with Progress(total=2, label="demo", stream=stream, clock=ManualClock()) as progress:
        progress.update(advance=1, status="a")
        progress.log("hello")
    before, after = ANSI.sub("", stream.getvalue()).split("hello\n")
    assert before.endswith("\r")  # the bar was erased for the line
    assert after.split("\r")[0].endswith(" 1/2 a 0.0 s")  # and drawn again below it


def test_small_steps_on_a_terminal_are_redrawn_at_most_every_tenth_of_a_second() -> None:
    stream, clock = TerminalDouble(), ManualClock()
    with Progress(total=10_000, stream=stream, clock=clock) as progress:
        for _ in range(1_000):  # 10% in steps of 0.01%: ten whole-percent redraws
            progress.update(advance=1)
        clock.advance(0.2)
        progress.update(advance=1)  # under a percent, but the interval has passed
    assert stream.getvalue().count("\r") < 20
    assert "1001/10000" in stream.getvalue()
