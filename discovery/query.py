"""The query language for service ads, and the inputs to ranking.

Constraints over attributes (``== != < <= > >= in not_in`` combined with ``and or not``), a
price ceiling and SLA requirements. Expressions can be built in Python or parsed from text
(the CLI's ``--where``), through a whitelist of Python's own expression grammar::

    Query("forecast.demand", where=parse_where("region == 'eu' and gpu in ['h100', 'a100']"),
          max_price=Credits.parse("5"), max_p95_ms=2000)
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aaex_agents.errors import UsageError
from aaex_agents.money import Credits

from .records import AttributeValue, ServiceAd

_MISSING = object()


@dataclass(frozen=True)
class Compare:
    """`attribute OP value`; an ad without the attribute never matches (not even `!=`)."""

    attribute: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        if self.op not in _OPERATORS:
            raise UsageError(f"unknown operator {self.op!r}; use one of {', '.join(_OPERATORS)}")

    def matches(self, attributes: dict[str, AttributeValue]) -> bool:
        """Evaluate against an ad's attributes; type mismatches do not match."""
        actual = attributes.get(self.attribute, _MISSING)
        if actual is _MISSING:
            return False
        try:
            return bool(_OPERATORS[self.op](actual, self.value))
        except TypeError:
            return False


@dataclass(frozen=True)
class And:
    """Every part matches."""

    parts: tuple[Expr, ...]

    def matches(self, attributes: dict[str, AttributeValue]) -> bool:
        """True when every part matches."""
        return all(p.matches(attributes) for p in self.parts)


@dataclass(frozen=True)
class Or:
    """At least one part matches."""

    parts: tuple[Expr, ...]

    def matches(self, attributes: dict[str, AttributeValue]) -> bool:
        """True when any part matches."""
        return any(p.matches(attributes) for p in self.parts)


@dataclass(frozen=True)
class Not:
    """The part does not match."""

    part: Expr

    def matches(self, attributes: dict[str, AttributeValue]) -> bool:
        """True when the part does not match."""
        return not self.part.matches(attributes)


Expr = Compare | And | Or | Not

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
    "in": lambda a, b: a in b, "not_in": lambda a, b: a not in b,
}
_AST_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
            ast.GtE: ">=", ast.In: "in", ast.NotIn: "not_in"}


def parse_where(text: str) -> Expr:
    """Parse ``region == 'eu' and (gpu in ['h100'] or not quantized)``-style text.

    Only attribute names, literals, comparisons and and/or/not are allowed; nothing is
    evaluated as code.

    Raises:
        UsageError: the text is not such an expression; the message points at the part.
    """
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise UsageError(f"--where {text!r}: {exc.msg} at column {exc.offset}") from None
    return _convert(tree, text)


def _convert(node: ast.expr, text: str) -> Expr:
    if isinstance(node, ast.BoolOp):
        parts = tuple(_convert(v, text) for v in node.values)
        return And(parts) if isinstance(node.op, ast.And) else Or(parts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return Not(_convert(node.operand, text))
    if isinstance(node, ast.Name):  # a bare attribute means "is true"
        return Compare(node.id, "==", True)
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.left, ast.Name):
        op = _AST_OPS.get(type(node.ops[0]))
        if op is not None:
            try:
                value = ast.literal_eval(node.comparators[0])
            except ValueError:
                raise UsageError(f"--where {text!r}: the right side of "
                                 f"{node.left.id!r} must be a literal") from None
            return Compare(node.left.id, op, value)
    raise UsageError(f"--where {text!r}: cannot use {ast.unparse(node)!r}; write comparisons "
                     "like `attribute == 'value'` joined by and/or/not")


@dataclass(frozen=True)
class Query:
    """What a buyer looks for.

    Attributes:
        capability: the capability name, e.g. ``forecast.demand``.
        where: attribute constraints (None: any).
        max_price: price ceiling (None: any).
        max_p95_ms: the p95 latency the seller must promise at most.
        max_deadline_s: the delivery deadline the seller must promise at most.
        min_availability: the availability the seller must promise at least.
        limit: stop once this many matching ads are found (None: collect all).
    """

    capability: str
    where: Expr | None = None
    max_price: Credits | None = None
    max_p95_ms: float | None = None
    max_deadline_s: float | None = None
    min_availability: float | None = None
    limit: int | None = None

    def matches(self, ad: ServiceAd) -> bool:
        """True when `ad` offers the capability under every constraint."""
        if ad.capability != self.capability or ad.withdrawn:
            return False
        if self.max_price is not None and ad.price.amount > self.max_price:
            return False
        if self.max_p95_ms is not None and ad.sla.p95_ms > self.max_p95_ms:
            return False
        if self.max_deadline_s is not None and ad.sla.deadline_s > self.max_deadline_s:
            return False
        if self.min_availability is not None and ad.sla.availability < self.min_availability:
            return False
        return self.where is None or self.where.matches(ad.attributes)


@dataclass(frozen=True)
class Utility:
    """A buyer's weights for ranking ads (higher utility first); each term is in [0, 1].

    price: cheaper is better (relative to the dearest candidate); latency: lower promised
    p95 is better; reputation: the seller's score in [0, 1]; measured: lower latency
    measured by the buyer itself is better.
    """

    price: float = 1.0
    latency: float = 1.0
    reputation: float = 1.0
    measured: float = 0.5
    reputation_of: dict[str, float] = field(default_factory=dict)
    measured_ms_of: dict[str, float] = field(default_factory=dict)

    def rank(self, ads: Sequence[ServiceAd]) -> list[tuple[float, ServiceAd]]:
        """Score and sort `ads`, best first; ties keep a stable order by address."""
        if not ads:
            return []
        top_price = max(a.price.amount.micro for a in ads) or 1
        top_p95 = max(a.sla.p95_ms for a in ads) or 1.0
        measured = [self.measured_ms_of[a.address] for a in ads if a.address in self.measured_ms_of]
        top_measured = max(measured, default=1.0) or 1.0
        scored = []
        for ad in ads:
            score = (self.price * (1 - ad.price.amount.micro / top_price)
                     + self.latency * (1 - ad.sla.p95_ms / top_p95)
                     + self.reputation * self.reputation_of.get(ad.address, 0.5))
            if ad.address in self.measured_ms_of:
                score += self.measured * (1 - self.measured_ms_of[ad.address] / top_measured)
            scored.append((score, ad))
        return sorted(scored, key=lambda pair: (-pair[0], pair[1].address))
