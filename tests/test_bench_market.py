"""`python -m bench.market` measures what it says: hundreds of negotiations in flight between
nodes that share one address all complete (the per-address connection limit once refused
the extra connections, and the benchmark reported 290 of 1,000 negotiations lost)."""

from __future__ import annotations

from bench.market import concurrent_load


async def test_concurrent_negotiations_between_nodes_on_one_address_are_all_completed() -> None:
    figures = await concurrent_load(total=400, nodes=4, k=3, window=60.0)
    assert (figures["completed"], figures["lost"], figures["errors"]) == (400, 0, [])
