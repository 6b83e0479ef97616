"""The node's Prometheus metrics: one `prometheus_client` registry per node, read at scrape time.

The node keeps its figures where they are counted (the runtime, the sellers' dialogues, the
DHT, the LLM service, the ledger); `NodeCollector` reads them when `/metrics` is scraped, so
nothing is counted twice and nothing needs updating on the hot path. `prometheus_client` writes
the exposition, escaping label values (a reason or an error name may hold any character).

    registry, collector = node_registry(node)
    collector.ledger_counts = await node.ledger.counts()   # the one figure read async
    body = generate_latest(registry)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from aaex_agents.money import MICRO

from ..consensus import ONE
from ..consensus.board import ConsensusBook
from ..contracts.books import Position
from ..trade.negotiation import Seller

if TYPE_CHECKING:
    from aaex_agents.interop import InteropMetrics
    from aaex_agents.llm import LLMMetrics, LLMService
    from aaex_agents.runtime import Runtime
    from discovery.dht import Discovery


class HasInteropMetrics(Protocol):
    """The uAgents and A2A listener, as `/metrics` reads it."""

    @property
    def metrics(self) -> InteropMetrics:
        """The listener's counters."""


class MetricsView(Protocol):
    """What `/metrics` reads of a node: where each figure is counted."""

    @property
    def runtime(self) -> Runtime:
        """The runtime hosting the node's agents."""

    @property
    def discovery(self) -> Discovery | None:
        """The DHT, when the node joined one."""

    @property
    def llm(self) -> LLMService | None:
        """The language model the agents share, if any."""

    @property
    def interop(self) -> HasInteropMetrics | None:
        """The uAgents and A2A listener, if any."""

    @property
    def started(self) -> float:
        """When the node started (monotonic seconds)."""


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counted_by(name: str, documentation: str, label: str,
                counts: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([key], count)
    return family


class NodeCollector:
    """Collects a node's live figures each time its registry is read.

    Attributes:
        ledger_counts: (agreements recorded, agreements settled) of the ledger, which only an
            async call can read: the scraper sets it before each read; None leaves them out.
        disputes_open: disputes on the books no resolution ended; set like `ledger_counts`.
        disputes_total: disputes the books recorded, resolved or not; set likewise.
        accounts: per hosted agent's name, its money on these books (books.Position);
            set likewise.
        bans_total: bans our buying agents imposed since start; set likewise.
        consensus: the market's `ConsensusBook` (what hosted validators computed); set
            likewise, None leaves the ``aaex_consensus_*`` metrics out.
    """

    def __init__(self, node: MetricsView) -> None:
        self._node = node
        self.ledger_counts: tuple[int, int] | None = None
        self.disputes_open: int | None = None
        self.disputes_total: int | None = None
        self.accounts: dict[str, Position] | None = None
        self.bans_total: int | None = None
        self.consensus: ConsensusBook | None = None

    def collect(self) -> Iterator[Metric]:
        """The node's metrics now; names end in ``_total`` for counters and only for them."""
        node, m = self._node, self._node.runtime.metrics
        if self.ledger_counts is not None:
            recorded, settled = self.ledger_counts
            yield _counter("aaex_agreements_total", "Agreements recorded in the ledger", recorded)
            yield _counter("aaex_settlements_total", "Agreements settled (paid or refunded)",
                           settled)
        if self.disputes_open is not None:
            yield _gauge("aaex_disputes_open", "Disputed agreements no resolution has ended "
                         "(their money held)", self.disputes_open)
        if self.disputes_total is not None:
            yield _counter("aaex_disputes_total", "Disputes recorded on the books",
                           self.disputes_total)
        if self.bans_total is not None:
            yield _counter("aaex_bans_total", "Sellers banned by our buying agents (backoff)",
                           self.bans_total)
        if self.accounts is not None:
            yield from account_metrics(self.accounts)
        yield _counter("aaex_messages_in_total", "Envelopes accepted and handled", m.received)
        yield _counter("aaex_messages_out_total", "Envelopes sent", m.sent)
        yield _counter("aaex_handler_errors_total", "Handler failures answered with an error",
                       m.handler_errors)
        yield _counted_by("aaex_messages_rejected_total", "Envelopes refused, by reason",
                          "reason", m.rejected)
        states: dict[str, int] = {}
        for agent in node.runtime.agents.values():
            if isinstance(agent, Seller):
                for dialogue in agent.dialogues.values():
                    states[dialogue.state.value] = states.get(dialogue.state.value, 0) + 1
        yield _counted_by("aaex_negotiations_total", "Negotiations seen by this node's sellers",
                          "state", states)
        if node.discovery is not None:
            stats = node.discovery.stats
            yield _counter("aaex_dht_lookups_total", "Capability lookups", stats.lookups)
            yield _counter("aaex_dht_lookup_cache_hits_total", "Lookups answered from cache",
                           stats.cache_hits)
            yield _counter("aaex_dht_records_rejected_total", "Invalid records dropped",
                           stats.rejected)
            yield _gauge("aaex_index_held_ads", "Ads this node holds as an index node",
                         len(node.discovery.index))
        if node.llm is not None:
            yield from llm_metrics(node.llm.metrics)
        if node.interop is not None:  # uAgents and A2A traffic, by protocol and reason
            interop = node.interop.metrics
            yield _counted_by("aaex_interop_received_total",
                              "Interop messages accepted, by protocol", "protocol",
                              interop.received)
            yield _counted_by("aaex_interop_sent_total", "Interop messages sent, by protocol",
                              "protocol", interop.sent)
            rejected = CounterMetricFamily("aaex_interop_rejected_total",
                                           "Interop messages refused, by protocol and reason",
                                           labels=["protocol", "reason"])
            for (protocol, reason), count in sorted(interop.rejected.items()):
                rejected.add_metric([protocol, reason], count)
            yield rejected
        if self.consensus is not None:
            yield from consensus_metrics(self.consensus)
        yield _gauge("aaex_uptime_seconds", "Seconds since start", time.monotonic() - node.started)


def consensus_metrics(book: ConsensusBook) -> Iterator[Metric]:
    """Per capability, the latest epoch computed and each seller's incentive and quality.

    Incentive is the seller's fraction of the emission; quality its incentive over the best
    seller's (what awards blend with receipt reputation).
    """
    epoch = GaugeMetricFamily("aaex_consensus_epoch", "Latest consensus epoch computed",
                              labels=["capability"])
    incentive = GaugeMetricFamily("aaex_consensus_incentive",
                                  "A seller's share of the emission in the latest epoch",
                                  labels=["capability", "seller"])
    quality = GaugeMetricFamily("aaex_consensus_quality",
                                "A seller's incentive over the best seller's (awards use it)",
                                labels=["capability", "seller"])
    for capability in book.capabilities():
        standing = book.standing(capability)
        if standing is None:
            continue
        epoch.add_metric([capability], standing.epoch)
        for seller, value in sorted(standing.incentive.items()):
            incentive.add_metric([capability, seller], value / ONE)
            quality.add_metric([capability, seller], standing.quality(seller) or 0.0)
    yield from (epoch, incentive, quality)


def account_metrics(accounts: dict[str, Position]) -> Iterator[Metric]:
    """Per hosted agent (label ``agent``, its name): its money on these books, in credits.

    A gauge is a float: exact to the micro-credit up to 2**53 micro-credits (9 billion
    credits); the books and the API keep the integers.
    """
    for field, documentation in (
            ("available", "Credits free to spend or withdraw"),
            ("held", "Credits held in escrow"),
            ("receivable", "Credits partners owe the agent, netted per partner"),
            ("payable", "Credits the agent owes partners, netted per partner")):
        family = GaugeMetricFamily(f"aaex_account_{field}_credits", documentation,
                                   labels=["agent"])
        for name, position in sorted(accounts.items()):
            family.add_metric([name], getattr(position, field).micro / MICRO)
        yield family


def llm_metrics(m: LLMMetrics) -> Iterator[Metric]:
    """The shared LLM service's counters.

    The generation rate is measured over the time the engine was busy, so idle time does not
    dilute it; it reads 0 until a request has finished.
    """
    yield _counter("aaex_llm_requests_total", "LLM requests that reached the engine",
                   m.requests)
    yield _counter("aaex_llm_completed_total", "LLM requests answered", m.completed)
    yield _counted_by("aaex_llm_errors_total", "LLM requests failed, by error", "error",
                      m.errors)
    yield _counter("aaex_llm_prompt_tokens_total", "Prompt tokens of answered requests",
                   m.prompt_tokens)
    yield _counter("aaex_llm_completion_tokens_total", "Tokens generated for answered requests",
                   m.completion_tokens)
    yield _gauge("aaex_llm_tokens_per_second", "Generated tokens per second while busy",
                 m.tokens_per_second or 0.0)
    yield _gauge("aaex_llm_queue_wait_seconds_max", "Longest wait of a request for the engine",
                 m.queue_wait_max)


def node_registry(node: MetricsView) -> tuple[CollectorRegistry, NodeCollector]:
    """A registry of `node`'s metrics alone (not the process-wide default registry)."""
    registry = CollectorRegistry(auto_describe=False)
    collector = NodeCollector(node)
    registry.register(collector)
    return registry, collector


def metrics_text(node: MetricsView) -> str:
    """The Prometheus text exposition of `node`'s metrics, less the ledger's (see the module)."""
    registry, _ = node_registry(node)
    return generate_latest(registry).decode()
