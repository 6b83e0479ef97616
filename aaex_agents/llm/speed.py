"""`Speed`: a model's decode speed as a node advertises it, measured warm and repeatedly.

One cold generation says little: a first request pays for loading weights into caches,
compiling kernels or filling a batch, and a node that advertised it once measured 0.55
tokens/s and, on another start, 46.3. So a node discards warm-up generations, times several
more, and advertises their median with the range it saw; a buyer reads both.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UsageError


def decode_rate(tokens: int, seconds: float, ttft_seconds: float | None) -> float | None:
    """Generated tokens per second of decoding, what a buyer of long answers pays time for.

    Where the engine says when the first token came, the tokens after it over the time
    after it (prefill is the time to first token, advertised apart); elsewhere all tokens
    over all the time. None when nothing measurable was generated.
    """
    if ttft_seconds is not None:
        tokens, seconds = tokens - 1, seconds - ttft_seconds
    if tokens <= 0 or seconds <= 0:
        return None
    return tokens / seconds


@dataclass(frozen=True)
class Speed:
    """Tokens per second over `runs` warmed generations: the median and the range seen."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Speed:
        """The speed of `samples` (tokens/s, one per generation).

        Raises:
            UsageError: no samples.
        """
        if not samples:
            raise UsageError("a speed needs at least one measured generation")
        return cls(median=statistics.median(samples), low=min(samples), high=max(samples),
                   runs=len(samples))
