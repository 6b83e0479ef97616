"""What a node gives the agents it hosts, as one typed object known when the runtime opens.

The SDK never imports the market. It states here what it needs of one (`Delegation`, and what
a finished delegation looks like, `Delegated`); `marketplace` implements both and the node
passes them in `Services` to `open_runtime`. Handlers reach them as `ctx.llm` and
`ctx.delegate(...)`, typed end to end, never as attributes set on the runtime afterwards.

The terms of a delegation are declared once, as `DelegateTerms`: `ctx.delegate`, the
`Delegation` protocol and the market's `Delegator` all take them as typed keywords.

What the user's own handlers need (a database, a price feed, a client) is not a service:
it is the runtime's dependencies, ``open_runtime(..., deps=...)``, reached as ``ctx.deps``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, Unpack

from .money import Credits

if TYPE_CHECKING:
    from .llm.service import LLMService


class DelegationAttempt(Protocol):
    """One award of a delegation and how it ended."""

    @property
    def seller(self) -> str:
        """The provider's address."""

    @property
    def verdict(self) -> str:
        """``met``, ``breached``, ``not_delivered``, ``no_agreement`` or ``no_grant``.

        ``no_grant``: the owner of the task's data granted that seller nothing.
        """

    @property
    def detail(self) -> str:
        """What went wrong, in words (empty when it was met)."""

    @property
    def agreement_id(self) -> str | None:
        """The agreement of this award; None when no agreement was reached."""


class Delegated(Protocol):
    """A subtask the market did: its result, who did it, and what it cost."""

    @property
    def result(self) -> dict[str, Any]:
        """The provider's result, checked against the agreement."""

    @property
    def seller(self) -> str:
        """The address of the provider that delivered."""

    @property
    def agreement_id(self) -> str:
        """The id of the agreement both sides signed."""

    @property
    def price(self) -> Credits:
        """What was agreed (for a per-token sale: the cap escrowed)."""

    @property
    def attempts(self) -> Sequence[DelegationAttempt]:
        """Every award tried, in order; the last one delivered."""


class _RequiredTerms(TypedDict):
    budget: Credits
    deadline: float


class DelegateTerms(_RequiredTerms, total=False):
    """The terms of one delegation, given as keywords to ``ctx.delegate(capability, task, ...)``.

    The one declaration of them: `Context.delegate`, `Delegation.delegate` and the market's
    `Delegator.delegate` all take ``**terms: Unpack[DelegateTerms]``.

    Keys:
        budget: the most to pay (``Credits.parse("5")`` is 5 credits). Required.
        deadline: seconds from now by which the result must be in hand. Required.
        where: constraints on the sellers' ads in the query language (``"region == 'eu'"``);
            default none.
        max_latency_ms: the slowest delivery the buyer accepts; default 30 000.
        penalty: what a seller must owe if it breaches; default zero.
        top_k: how many sellers to negotiate with at once; default 3.
        use: for a task that carries someone's data, the owner's grant and the use asked
            (the market's ``DataUse``), or an async function giving each seller's
            (``SellerUses``: an owner grants each seller apart, as a grant names one
            grantee); a seller granted nothing is not asked. Default none. Typed loosely
            here: the grant types belong to the market, which checks what it is given.
    """

    where: str | None
    max_latency_ms: float
    penalty: Credits
    top_k: int
    use: object


DelegationProgress = Callable[[str, dict[str, Any]], None]
"""(event, details) as a delegation goes, for a buyer that wants to show or keep its market:
``sellers`` (those found), ``offers`` (each seller's bid: price, latency, reputation and the
buyer's utility of it, or why it dropped out), ``agreement`` (the award and why), then
``delivery``, ``receipt`` and ``settled``. Amounts are decimal credits with their ``*_micro``
twin. The market's `Delegator` documents each event's keys."""


class Delegation(Protocol):
    """The market as one agent sees it: buys work as that agent, from its own wallet."""

    async def delegate(self, ctx: Any, capability: str, task: Mapping[str, Any], *,
                       progress: DelegationProgress | None = None,
                       **terms: Unpack[DelegateTerms]) -> Delegated:
        """Get `task` done by the best provider of `capability` within the deadline.

        Args:
            ctx: the buying agent's `Context` (the market sends and asks through it; typed
                loosely here, where the context module is not imported, as it imports this).
            capability: what to buy, e.g. ``"forecast.demand"``.
            task: the work, as JSON-like data the seller's `perform` reads.
            progress: hears each step as it happens (`DelegationProgress`); None: silent.
            terms: the budget, deadline and the rest (`DelegateTerms`).

        Raises:
            DelegationFailed: every attempt failed or the deadline passed.
            UsageError: a non-positive budget or deadline, or a term that is not one.
        """


class Market(Protocol):
    """The node's market service: one `Delegation` per hosted agent."""

    def for_agent(self, address: str) -> Delegation:
        """The delegation that buys as the hosted agent at `address`."""


@dataclass(frozen=True, kw_only=True)
class Services:
    """Everything a node shares with its agents; pass it to ``open_runtime(services=...)``.

    Attributes:
        llm: the node's language model, reached as ``ctx.llm`` (its opener closes it).
        market: the market, reached as ``ctx.delegate(...)``.
    """

    llm: LLMService | None = None
    market: Market | None = None


NO_SERVICES = Services()
"""What a runtime opened without `services` gives its agents: nothing."""
