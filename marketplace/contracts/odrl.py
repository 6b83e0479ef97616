"""A small ODRL 2.2 evaluator: does a policy permit one request, and which premise failed.

The subset (W3C ODRL 2.2 Information Model, compacted JSON-LD with the ODRL context):

- a policy (``Set``, ``Offer``, ``Agreement`` or ``Policy``) with ``permission`` and
  ``prohibition`` rules; no duties, obligations or conflict strategy;
- a rule with at most one ``action``, ``target``, ``assignee`` (each optional: an absent
  one matches any request), compared as identifiers; an action also matches the actions it
  includes (``use`` includes ``read``, ``distribute``, ``delete``..., as the ODRL Common
  Vocabulary's ``odrl:includedIn`` says);
- constraints on ``dateTime`` (``eq neq lt lteq gt gteq``, against the request's time) and
  on ``purpose`` (``eq neq isAnyOf isNoneOf``, against the request's purpose), all of which
  must hold (no ``and``/``or``/``xone`` logical constraints, no refinements).

Anything else raises `UnsupportedPolicy`, naming the feature: a grant never means what its
evaluator silently ignored. A rule is *active* for a request when every premise (target,
party, action, each constraint) is satisfied, as in the compliance reports of the ODRL
Test Suite (tests/data/odrl); a request is permitted when a permission is active and no
prohibition is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aaex_agents.errors import UsageError

ODRL = "http://www.w3.org/ns/odrl/2/"
ODRL_CONTEXT = "http://www.w3.org/ns/odrl.jsonld"

INCLUDED_IN = {
    "read": "use", "distribute": "use", "delete": "use", "modify": "use", "derive": "use",
    "aggregate": "use", "anonymize": "use", "display": "use", "execute": "use",
    "extract": "use", "reproduce": "use", "transform": "use", "index": "use",
    "write": "use", "sell": "transfer", "give": "transfer",
}
"""The actions each action is ``odrl:includedIn`` (ODRL 2.2 Common Vocabulary), as far as
this evaluator knows them."""

_POLICY_TYPES = {"Set", "Offer", "Agreement", "Policy"}
_POLICY_KEYS = {"@context", "@type", "uid", "@id", "permission", "prohibition"}
_RULE_KEYS = {"uid", "@id", "action", "target", "assignee", "assigner", "constraint", "@type"}
_TIME_OPERATORS = {"eq", "neq", "lt", "lteq", "gt", "gteq"}
_PURPOSE_OPERATORS = {"eq", "neq", "isAnyOf", "isNoneOf"}


class UnsupportedPolicy(UsageError):
    """The policy uses ODRL beyond the subset this evaluator decides; it decides nothing."""


@dataclass(frozen=True)
class Request:
    """Who asks to do what with which asset, when and for which purpose."""

    assignee: str | None
    action: str
    target: str | None
    at: datetime
    purpose: str | None = None


@dataclass(frozen=True)
class Constraint:
    """One ``leftOperand operator rightOperand`` constraint of a rule."""

    uid: str | None
    left: str
    operator: str
    right: tuple[Any, ...]
    when: datetime | None = None
    """The instant a dateTime constraint compares with (None for other operands)."""


@dataclass(frozen=True)
class Rule:
    """A permission or a prohibition of the subset."""

    kind: str
    uid: str | None
    action: str | None
    target: str | None
    assignee: str | None
    constraints: tuple[Constraint, ...] = ()


@dataclass(frozen=True)
class Policy:
    """A parsed policy of the subset."""

    uid: str | None
    rules: tuple[Rule, ...]


@dataclass
class RuleReport:
    """Whether a rule is active for a request, premise by premise (False: unsatisfied).

    `premises` keys are ``target``, ``party``, ``action`` (each only when the rule states
    it) and, per constraint, its uid or ``constraint[i]``.
    """

    rule: Rule
    premises: dict[str, bool] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """True when every premise holds."""
        return all(self.premises.values())

    def failed(self) -> list[str]:
        """The premises that do not hold, in rule order."""
        return [name for name, ok in self.premises.items() if not ok]


def _name(value: Any, where: str) -> str:
    """An identifier from a JSON-LD value: a string, or an object's ``@id``/``uid``."""
    if isinstance(value, Mapping):
        if value.get("@type") in ("PartyCollection", "AssetCollection") or "refinement" in value:
            raise UnsupportedPolicy(f"{where}: collections and refinements are not supported")
        for key in ("@id", "uid"):
            if isinstance(value.get(key), str):
                return _short(value[key])
    if isinstance(value, str):
        return _short(value)
    raise UnsupportedPolicy(f"{where}: expected one identifier, got {value!r}")


def _short(iri: str) -> str:
    """``http://www.w3.org/ns/odrl/2/read`` and ``odrl:read`` both become ``read``."""
    for prefix in (ODRL, "odrl:"):
        if iri.startswith(prefix):
            return iri[len(prefix):]
    return iri


def _one(value: Any, where: str) -> Any:
    if isinstance(value, list):
        if len(value) != 1:
            raise UnsupportedPolicy(f"{where}: exactly one value is supported, got {len(value)}")
        return value[0]
    return value


def _literal(value: Any) -> Any:
    if isinstance(value, Mapping):
        if "@value" in value:
            return value["@value"]
        return _name(value, "rightOperand")
    return _short(value) if isinstance(value, str) else value


def _constraint(doc: Any, where: str) -> Constraint:
    if not isinstance(doc, Mapping):
        raise UnsupportedPolicy(f"{where}: a constraint must be an object")
    if any(k in doc for k in ("and", "or", "xone", "andSequence")):
        raise UnsupportedPolicy(f"{where}: logical constraints are not supported")
    extra = set(doc) - {"uid", "@id", "@type", "leftOperand", "operator", "rightOperand"}
    if extra:
        raise UnsupportedPolicy(f"{where}: {sorted(extra)} not supported in a constraint")
    left = _name(doc.get("leftOperand"), f"{where}.leftOperand")
    operator = _name(doc.get("operator"), f"{where}.operator")
    allowed = {"dateTime": _TIME_OPERATORS, "purpose": _PURPOSE_OPERATORS}.get(left)
    if allowed is None:
        raise UnsupportedPolicy(f"{where}: leftOperand {left!r} is not supported "
                                "(dateTime, purpose)")
    if operator not in allowed:
        raise UnsupportedPolicy(f"{where}: operator {operator!r} on {left} is not supported "
                                f"({' '.join(sorted(allowed))})")
    raw = doc.get("rightOperand")
    right = tuple(_literal(v) for v in (raw if isinstance(raw, list) else [raw]))
    when = None
    if left == "dateTime":
        if len(right) != 1:
            raise UnsupportedPolicy(f"{where}: a dateTime constraint takes one value")
        when = parse_time(str(right[0]), where)
    uid = doc.get("uid", doc.get("@id"))
    return Constraint(uid if isinstance(uid, str) else None, left, operator, right, when)


def parse_time(text: str, where: str = "dateTime") -> datetime:
    """An xsd:dateTime with its zone (``2024-02-12T11:20:10.999Z``) as an aware datetime."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{where}: {text!r} is not an xsd:dateTime") from None
    if value.tzinfo is None:
        raise UsageError(f"{where}: {text!r} has no time zone; add Z or an offset")
    return value.astimezone(UTC)


def _rule(kind: str, doc: Any, where: str) -> Rule:
    if not isinstance(doc, Mapping):
        raise UnsupportedPolicy(f"{where}: a rule must be an object")
    extra = set(doc) - _RULE_KEYS
    if extra:
        raise UnsupportedPolicy(f"{where}: {sorted(extra)} not supported in a rule")
    parts = {key: (_name(_one(doc[key], f"{where}.{key}"), f"{where}.{key}")
                   if doc.get(key) is not None else None)
             for key in ("action", "target", "assignee")}
    raw = doc.get("constraint") or []
    constraints = tuple(_constraint(c, f"{where}.constraint[{i}]")
                        for i, c in enumerate(raw if isinstance(raw, list) else [raw]))
    uid = doc.get("uid", doc.get("@id"))
    return Rule(kind, uid if isinstance(uid, str) else None, parts["action"], parts["target"],
                parts["assignee"], constraints)


def parse_policy(doc: Mapping[str, Any]) -> Policy:
    """The policy a compacted ODRL JSON-LD document states.

    Raises:
        UnsupportedPolicy: the document uses ODRL beyond the subset (named in the message).
    """
    kind = _short(str(doc.get("@type", "")))
    if kind not in _POLICY_TYPES:
        raise UnsupportedPolicy(f"@type: {kind!r} is not a policy type "
                                f"({', '.join(sorted(_POLICY_TYPES))})")
    # Anything else at the top (obligations, a conflict strategy, a compact policy's shared
    # action or target...) would change what the rules mean; terms of another vocabulary
    # (``dct:description``) do not.
    extra = sorted(k for k in doc if k not in _POLICY_KEYS and ":" not in k)
    if extra:
        raise UnsupportedPolicy(f"{extra}: not supported at the policy level")
    rules: list[Rule] = []
    for key, name in (("permission", "permission"), ("prohibition", "prohibition")):
        raw = doc.get(key) or []
        for i, one in enumerate(raw if isinstance(raw, list) else [raw]):
            if isinstance(one, Mapping) and "duty" in one:
                raise UnsupportedPolicy(f"{key}[{i}]: duties are not supported")
            rules.append(_rule(name, one, f"{key}[{i}]"))
    uid = doc.get("uid", doc.get("@id"))
    return Policy(uid if isinstance(uid, str) else None, tuple(rules))


def includes(granted: str, asked: str) -> bool:
    """True when the action `granted` covers `asked` (equal, or includes it transitively)."""
    action: str | None = asked
    while action is not None:
        if action == granted:
            return True
        action = INCLUDED_IN.get(action)
    return False


def _holds(constraint: Constraint, request: Request) -> bool:
    op, right = constraint.operator, constraint.right
    if constraint.left == "dateTime":
        at, bound = request.at, constraint.when
        if bound is None:
            return False
        outcome: bool = {"eq": at == bound, "neq": at != bound, "lt": at < bound,
                "lteq": at <= bound, "gt": at > bound, "gteq": at >= bound}[op]
        return outcome
    # A request that states no purpose is in no set of purposes: it fails eq and isAnyOf
    # and passes neq and isNoneOf (as the suite's cases 071, 073 and 076 expect).
    if op in ("eq", "isAnyOf"):
        return request.purpose in right
    return request.purpose not in right  # neq, isNoneOf


def report(rule: Rule, request: Request) -> RuleReport:
    """Each premise of `rule` for `request`."""
    found = RuleReport(rule)
    if rule.target is not None:
        found.premises["target"] = rule.target == request.target
    if rule.assignee is not None:
        found.premises["party"] = rule.assignee == request.assignee
    if rule.action is not None:
        found.premises["action"] = includes(rule.action, request.action)
    for i, constraint in enumerate(rule.constraints):
        found.premises[constraint.uid or f"constraint[{i}]"] = _holds(constraint, request)
    return found


def evaluate(policy: Policy, request: Request) -> list[RuleReport]:
    """A report per rule of `policy`, in order."""
    return [report(rule, request) for rule in policy.rules]


def permitted(reports: Sequence[RuleReport]) -> bool:
    """True when some permission is active and no prohibition is."""
    return (any(r.active for r in reports if r.rule.kind == "permission")
            and not any(r.active for r in reports if r.rule.kind == "prohibition"))
