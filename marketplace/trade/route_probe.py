"""``route.vrp`` probes: routing instances whose optimum the validator knows by construction.

A probe plants its optimum. Stores lie on a few rays out of the depot, several per ray, one
truck per ray. On each ray the farthest store wants more than half a truck, and the stores
of a ray want exactly one truck between them. No truck can then reach two rays' farthest
stores, so each truck serves one of them, and it drives at least out to it and back. Serving
each ray whole, out and back, costs exactly that, which makes it optimal:
``optimum = sum(2 * distance of each ray's farthest store)``.

The task has the shape a customer's ``route.vrp`` task has (depot, stores, demand, trucks,
capacity); the seller's answer (``{"routes": [{"path": [...]}, ...]}``) is checked for
feasibility (every store once, no truck over capacity, no more routes than trucks) and its
length recomputed from the coordinates, never read from the answer. Score: 0 for an
infeasible plan, else ``clip(1 - 10 * (length / optimum - 1), 0, 1)``: the optimum scores
1, a plan 10% longer scores 0.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aaex_agents import Context

from .probes import Made

Point = tuple[float, float]


@dataclass(frozen=True)
class RouteKey:
    """What the validator keeps: the instance and its planted optimum."""

    depot: Point
    stores: dict[str, Point]
    demand: dict[str, int]
    trucks: int
    capacity: int
    optimum: float


@dataclass(frozen=True)
class RouteProbe:
    """``route.vrp``: a capacitated VRP with a planted optimum (see the module docstring)."""

    capability: str = "route.vrp"
    rays: tuple[int, int] = (3, 5)
    """How many rays (and trucks), at least and at most."""
    per_ray: tuple[int, int] = (2, 4)
    """Stores on each ray, at least and at most."""
    capacity: int = 100
    tolerance: float = 0.1
    """How much longer than the optimum a plan may be before it scores 0."""
    max_seconds: float = 0.2
    """The search time the task grants: a router finds these small optima well within it."""

    def make(self, seed: bytes) -> Made:
        """A fresh instance from `seed`; store ids shuffled so their order tells nothing."""
        rng = random.Random(  # noqa: S311 - a reproducible instance, not a secret
            hashlib.sha256(b"aaex.probe.route/1" + seed).digest())
        rays = rng.randint(*self.rays)
        start = rng.uniform(0, 2 * math.pi)
        points: list[tuple[Point, int]] = []
        optimum = 0.0
        for ray in range(rays):
            angle = start + 2 * math.pi * ray / rays + rng.uniform(-0.2, 0.2)
            count = rng.randint(*self.per_ray)
            far = rng.randint(self.capacity // 2 + 1, self.capacity - (count - 1))
            rest = _split(self.capacity - far, count - 1, rng)
            distances = sorted(rng.uniform(5, 60) for _ in range(count))
            for distance, want in zip(distances, [*rest, far], strict=True):
                points.append(((round(distance * math.cos(angle), 3),
                                round(distance * math.sin(angle), 3)), want))
            x, y = points[-1][0]
            optimum += 2 * math.hypot(x, y)
        rng.shuffle(points)
        stores = {f"S{n + 1:02d}": xy for n, (xy, _) in enumerate(points)}
        demand = {f"S{n + 1:02d}": want for n, (_, want) in enumerate(points)}
        task = {"depot": [0.0, 0.0], "stores": {s: list(xy) for s, xy in stores.items()},
                "demand": demand, "trucks": rays, "capacity": self.capacity,
                "max_seconds": self.max_seconds}
        return Made(task, RouteKey((0.0, 0.0), stores, demand, rays, self.capacity,
                                   # the coordinates are rounded: measure what was sent
                                   _planted(stores, demand, self.capacity)))

    async def score(self, ctx: Context, made: Made, result: Mapping[str, Any]) -> float:
        """1 at the optimum, falling to 0 at `tolerance` longer; 0 if infeasible."""
        key: RouteKey = made.key
        length = plan_length(key, result)
        if length is None:
            return 0.0
        return float(min(1.0, max(0.0, 1 - (length / key.optimum - 1) / self.tolerance)))


def plan_length(key: RouteKey, result: Mapping[str, Any]) -> float | None:
    """The plan's length from the coordinates, or None when it is not a feasible plan.

    A path may start and end with the depot's name or leave it out; any other name that is
    not a store, a store twice or missing, a truck over capacity, or more routes than
    trucks makes the plan infeasible.
    """
    routes = result.get("routes")
    if not isinstance(routes, list) or len(routes) > key.trucks:
        return None
    seen: set[str] = set()
    total = 0.0
    for route in routes:
        path = route.get("path") if isinstance(route, Mapping) else None
        if not isinstance(path, list) or not all(isinstance(s, str) for s in path):
            return None
        stops = [s for s in path if s in key.stores]
        if len(stops) != len([s for s in path if s.lower() != "depot"]) or seen & set(stops) \
                or len(set(stops)) != len(stops):
            return None
        if sum(key.demand[s] for s in stops) > key.capacity:
            return None
        seen |= set(stops)
        here = key.depot
        for stop in [*stops, None]:
            there = key.depot if stop is None else key.stores[stop]
            total += math.dist(here, there)
            here = there
    return total if seen == set(key.stores) else None


def _planted(stores: dict[str, Point], demand: dict[str, int], capacity: int) -> float:
    """Twice the distance of every store that wants more than half a truck."""
    return sum(2 * math.hypot(*stores[s]) for s in stores if 2 * demand[s] > capacity)


def _split(total: int, parts: int, rng: random.Random) -> list[int]:
    """`total` as `parts` positive whole numbers (`parts` 0: nothing)."""
    if parts == 0:
        return []
    cuts = sorted(rng.sample(range(1, total), parts - 1)) if parts > 1 else []
    edges = [0, *cuts, total]
    return [b - a for a, b in itertools.pairwise(edges)]
