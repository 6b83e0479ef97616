"""Reading the vendored ODRL Test Suite cases (tests/data/odrl) for the evaluator's test.

The suite states its cases in Turtle. This reads the part of Turtle those files use
(prefixes, IRIs, prefixed names, ``a``, ``;`` and ``,`` lists, ``[...]`` blank nodes,
plain and typed literals) into triples, and turns one case into what the evaluator takes:
the policy as compacted ODRL JSON-LD, the request, and the expected activation of each rule
with the satisfaction of each premise.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marketplace.contracts.odrl import ODRL, Request, parse_time

DATA = Path(__file__).parent / "data" / "odrl"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
REPORT = "https://w3id.org/force/compliance-report#"
SOTW = "https://w3id.org/force/sotw#"
EX = "http://example.org/"
DCT = "http://purl.org/dc/terms/"

_TOKEN = re.compile(r'''
    (?P<ws>\s+|\#[^\n]*)
  | (?P<iri><[^>]*>)
  | (?P<literal>"(?:[^"\\]|\\.)*"(?:\^\^(?:<[^>]*>|[A-Za-z][\w-]*:(?:[\w.-]*\w)?)|@[a-z-]+)?)
  | (?P<prefix>@prefix)
  | (?P<punct>[;,.\[\]])
  | (?P<name>[A-Za-z_][\w-]*:[\w.#/-]*[\w#/-]|[A-Za-z_][\w-]*:|a\b)
''', re.VERBOSE)


@dataclass(frozen=True)
class Literal:
    """A literal value and its datatype IRI (None: a plain string)."""

    value: str
    datatype: str | None = None


Term = str | Literal
Triple = tuple[str, str, Term]


class _Reader:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise ValueError(f"turtle: cannot read at {text[pos:pos + 40]!r}")
            pos = m.end()
            if m.lastgroup != "ws":
                self.tokens.append((m.lastgroup or "", m.group()))
        self.i = 0
        self.prefixes: dict[str, str] = {}
        self.triples: list[Triple] = []
        self.blank = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("eof", "")

    def take(self) -> tuple[str, str]:
        token = self.peek()
        self.i += 1
        return token

    def iri(self, kind: str, text: str) -> str:
        if kind == "iri":
            return text[1:-1]
        if text == "a":
            return RDF_TYPE
        prefix, _, local = text.partition(":")
        return self.prefixes[prefix] + local

    def term(self) -> Term:
        kind, text = self.take()
        if kind == "literal":
            m = re.match(r'"((?:[^"\\]|\\.)*)"(?:\^\^(.*))?', text)
            assert m is not None
            dtype = m.group(2)
            return Literal(m.group(1), None if dtype is None else self.iri(
                "iri" if dtype.startswith("<") else "name", dtype))
        if text == "[":
            self.blank += 1
            node = f"_:b{self.blank}"
            if self.peek()[1] != "]":
                self.predicates(node)
            self.take()  # ]
            return node
        return self.iri(kind, text)

    def predicates(self, subject: str) -> None:
        while True:
            kind, text = self.take()
            predicate = self.iri(kind, text)
            while True:
                self.triples.append((subject, predicate, self.term()))
                if self.peek()[1] != ",":
                    break
                self.take()
            if self.peek()[1] != ";":
                return
            self.take()
            if self.peek()[1] in (".", "]"):
                return

    def read(self) -> list[Triple]:
        while self.peek()[0] != "eof":
            if self.peek()[0] == "prefix":
                self.take()
                name = self.take()[1].rstrip(":")
                self.prefixes[name] = self.take()[1][1:-1]
                self.take()  # .
                continue
            subject = self.term()
            assert isinstance(subject, str)
            self.predicates(subject)
            self.take()  # .
        return self.triples


def read_turtle(text: str) -> list[Triple]:
    """The triples of a Turtle document (the subset the suite's files use)."""
    return _Reader(text).read()


class Graph:
    """Triples indexed by subject."""

    def __init__(self, triples: list[Triple]) -> None:
        self.by_subject: dict[str, list[tuple[str, Term]]] = defaultdict(list)
        for s, p, o in triples:
            self.by_subject[s].append((p, o))

    def objects(self, subject: str, predicate: str) -> list[Term]:
        return [o for p, o in self.by_subject.get(subject, []) if p == predicate]

    def one(self, subject: str, predicate: str) -> Term | None:
        found = self.objects(subject, predicate)
        return found[0] if found else None

    def subjects_of_type(self, type_iri: str) -> list[str]:
        return [s for s, pos in self.by_subject.items() if (RDF_TYPE, type_iri) in pos]


@dataclass
class Case:
    """One suite case, ready for the evaluator."""

    name: str
    title: str
    policy: dict[str, Any]
    request: Request
    expected: dict[str, tuple[bool, dict[str, bool]]]
    """Per rule IRI: (active, {premise: satisfied})."""


def _jsonld(graph: Graph, node: str) -> dict[str, Any] | str:
    """A node as compacted JSON-LD with the ODRL context (ODRL terms by their short name)."""
    if node not in graph.by_subject:
        return node
    doc: dict[str, Any] = {"uid": node}
    for predicate, obj in graph.by_subject[node]:
        if predicate == RDF_TYPE:
            doc["@type"] = str(obj).removeprefix(ODRL)
            continue
        if not predicate.startswith(ODRL):
            continue  # descriptions, sources
        key = predicate.removeprefix(ODRL)
        if key == "uid":
            continue
        if isinstance(obj, Literal):
            value: Any = {"@value": obj.value, "@type": obj.datatype} if obj.datatype \
                else obj.value
        elif obj.startswith(ODRL):
            value = obj.removeprefix(ODRL)
        else:
            value = _jsonld(graph, obj)
        doc.setdefault(key, []).append(value)
    for key in ("action", "target", "assignee", "assigner", "leftOperand", "operator", "@type"):
        if isinstance(doc.get(key), list) and len(doc[key]) == 1:
            doc[key] = doc[key][0]
    if isinstance(doc.get("rightOperand"), list) and len(doc["rightOperand"]) == 1:
        doc["rightOperand"] = doc["rightOperand"][0]
    return doc


def _request(graph: Graph, node: str, time: Literal | None) -> Request:
    if graph.one(node, RDF_TYPE) == SOTW + "EvaluationRequest":
        purpose = None
        at = time
        for parameter in graph.objects(node, SOTW + "requestParameter"):
            assert isinstance(parameter, str)
            feature = graph.one(parameter, SOTW + "describesFeature")
            value = graph.one(parameter, SOTW + "value")
            if feature == SOTW + "Purpose":
                purpose = str(value)
            elif feature == SOTW + "TemporalData" and isinstance(value, Literal):
                at = value
        assert at is not None
        return Request(assignee=str(graph.one(node, SOTW + "requestingParty")),
                       action=str(graph.one(node, SOTW + "requestedAction")).removeprefix(ODRL),
                       target=str(graph.one(node, SOTW + "requestedTarget")),
                       at=parse_time(at.value), purpose=purpose)
    permission = graph.one(node, ODRL + "permission")
    assert isinstance(permission, str) and time is not None
    return Request(assignee=str(graph.one(permission, ODRL + "assignee")),
                   action=str(graph.one(permission, ODRL + "action")).removeprefix(ODRL),
                   target=str(graph.one(permission, ODRL + "target")),
                   at=parse_time(time.value))


_PREMISE = {"TargetReport": "target", "PartyReport": "party", "ActionReport": "action"}


def _expected(graph: Graph, report: str) -> dict[str, tuple[bool, dict[str, bool]]]:
    expected = {}
    for rule_report in graph.objects(report, REPORT + "ruleReport"):
        assert isinstance(rule_report, str)
        rule = str(graph.one(rule_report, REPORT + "rule"))
        active = graph.one(rule_report, REPORT + "activationState") == REPORT + "Active"
        premises = {}
        for premise in graph.objects(rule_report, REPORT + "premiseReport"):
            assert isinstance(premise, str)
            kind = str(graph.one(premise, RDF_TYPE)).removeprefix(REPORT)
            name = (str(graph.one(premise, REPORT + "constraint"))
                    if kind == "ConstraintReport" else _PREMISE.get(kind, premise))
            premises[name] = (graph.one(premise, REPORT + "satisfactionState")
                              == REPORT + "Satisfied")
        expected[rule] = (active, premises)
    return expected


def _case(name: str, title: str, graph: Graph, policy: str, request: str, report: str,
          time: Literal | None) -> Case:
    doc = _jsonld(graph, policy)
    assert isinstance(doc, dict)
    return Case(name, title, doc, _request(graph, request, time), _expected(graph, report))


def _time(graph: Graph) -> Literal | None:
    found = graph.one("http://example.com/request/currentTime", DCT + "issued")
    return found if isinstance(found, Literal) else None


def suite_cases() -> list[Case]:
    """Every vendored case: those the suite's index lists, then the purpose cases."""
    cases = []
    index = Graph(read_turtle((DATA / "index.ttl").read_text()))
    for entry in index.by_subject:
        source = str(index.one(entry, EX + "expectedReportSource"))
        local = DATA / "test_cases" / source.rsplit("/", 1)[1]
        if not local.exists():
            continue  # outside the supported subset: not vendored (see the README)
        text = ""
        for key in ("policySource", "requestSource", "sotwSource"):
            part = str(index.one(entry, EX + key)).split("/refs/heads/main/data/", 1)[1]
            text += (DATA / part).read_text() + "\n"
        graph = Graph(read_turtle(text + local.read_text()))
        case = graph.subjects_of_type(EX + "TestCase")[0]
        cases.append(_case(local.stem, str(graph.one(case, DCT + "title")), graph,
                           str(graph.one(case, EX + "policy")),
                           str(graph.one(case, EX + "request")),
                           str(graph.one(case, EX + "expectedReport")), _time(graph)))
    for doc in sorted((DATA / "purpose").glob("*.md")):
        text = doc.read_text()
        blocks = re.findall(r"```ttl\n(.*?)```", text, re.DOTALL)
        graph = Graph(read_turtle("\n".join(blocks)))
        policy = next(s for t in ("Set", "Offer", "Agreement")
                      for s in graph.subjects_of_type(ODRL + t))
        request = graph.subjects_of_type(SOTW + "EvaluationRequest")[0]
        report = graph.subjects_of_type(REPORT + "PolicyReport")[0]
        cases.append(_case(doc.stem, text.splitlines()[0].lstrip("# "), graph, policy,
                           request, report, None))
    return cases
