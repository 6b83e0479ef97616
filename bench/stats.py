"""What the benchmarks share: a percentile, an aligned table, a progress line."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Percentile with linear interpolation, `q` in [0, 100]; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def aligned(rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """Plain-text table: the first row is the header, underlined; the first `left` columns
    are left-aligned, the others (figures) right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) if i < left else cell.rjust(width)
                               for i, (cell, width) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def progress(text: str) -> None:
    """Progress goes to stderr, so stdout holds the table and the JSON line only."""
    print(text, file=sys.stderr, flush=True)
