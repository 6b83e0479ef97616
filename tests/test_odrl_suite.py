"""The ODRL evaluator against the public ODRL Test Suite's cases inside its subset.

Every vendored case (tests/data/odrl, with its source and commit in the README there) must
agree with the suite's expected compliance report: each rule's activation and each premise's
satisfaction. A case dropping out of the data would shrink the claim silently, so their
number is pinned.
"""

from __future__ import annotations

import pytest

from marketplace.contracts.odrl import UnsupportedPolicy, evaluate, parse_policy, permitted
from tests.odrl_suite import Case, suite_cases

CASES = suite_cases()


def test_every_vendored_case_is_read() -> None:
    assert len(CASES) == 53
    assert len({case.name for case in CASES}) == 53


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_evaluator_agrees_with_the_suite(case: Case) -> None:
    reports = evaluate(parse_policy(case.policy), case.request)
    got = {r.rule.uid: (r.active, r.premises) for r in reports}
    assert got == case.expected, case.title


def test_permitted_needs_an_active_permission_and_no_active_prohibition() -> None:
    by_name = {case.name: case for case in CASES}
    allowed = by_name["testcase-001-alice"]  # an empty permission: anything goes
    refused = by_name["testcase-004-alice"]  # an empty prohibition: nothing goes
    assert permitted(evaluate(parse_policy(allowed.policy), allowed.request))
    assert not permitted(evaluate(parse_policy(refused.policy), refused.request))


@pytest.mark.parametrize("policy, feature", [
    ({"@type": "Set", "permission": [{"action": "read", "duty": [{"action": "compensate"}]}]},
     "duties"),
    ({"@type": "Set", "permission": [{"action": "read", "constraint": [
        {"and": [{"leftOperand": "dateTime", "operator": "lt", "rightOperand": "x"}]}]}]},
     "logical"),
    ({"@type": "Set", "permission": [{"action": "read", "constraint": [
        {"leftOperand": "spatial", "operator": "eq", "rightOperand": "EU"}]}]}, "spatial"),
    ({"@type": "Set", "permission": [{"action": "read", "constraint": [
        {"leftOperand": "purpose", "operator": "isA", "rightOperand": "x"}]}]}, "isA"),
    ({"@type": "Set", "target": "ex:x", "permission": [{"action": "read"}]}, "policy level"),
    ({"@type": "Set", "permission": [{"action": "read", "assignee": {
        "@type": "PartyCollection", "uid": "ex:team"}}]}, "collections"),
    ({"@type": "Ticket", "permission": []}, "policy type"),
])
def test_outside_the_subset_is_refused_not_ignored(policy: dict[str, object],
                                                   feature: str) -> None:
    with pytest.raises(UnsupportedPolicy, match=feature):
        parse_policy(policy)
