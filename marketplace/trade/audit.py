"""Signed audit heads between partners: each side can prove what the other's log said.

    the user's agent (used the data)                the data owner's agent
    AuditNotice(head, entries + inclusion proofs,
                consistency proof from `first`)  ─▶  AuditTaken(outcome, have) | Decline

When a node records a use of a partner's data (`Ledger.record_access(..., owner=partner)`),
its reporter (`report_audit`, run by the node) sends the partner the new entries with a fresh
signed head of its whole log and the consistency proof from the head the partner took last.
The partner's node (`AuditDesk`, behind the `MarketDesk`) checks the head's signature, that
every entry is about the addressed agent and was made by the sender, and each inclusion
proof; then its ledger judges the head against the newest it holds of that log
(`audit_log.check_head`). A head it cannot judge without a proof from its own size gets
``need_proof`` with that size, and the reporter sends again from there. A rewritten, cut or
reordered log is caught (``shrunk``, ``forked``, ``backdated``, ``inconsistent``): the
partner keeps both heads as evidence, and ``aaex audit verify`` on its node names the log.

Each sender may send `AUDIT_RATE` notices (then ``rate_limited``), of at most
`MAX_NOTICE_ENTRIES` entries and `MAX_PROOF_HASHES` hashes per proof.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from pydantic import BaseModel, ConfigDict, Field

from aaex_agents import Agent, Context, Message
from aaex_agents.errors import AaexError

from ..contracts.audit_log import AuditEntry, SignedTreeHead
from ..contracts.errors import ContractRejected, LedgerError
from ..contracts.ledger import Ledger
from ..contracts.merkle import verify_inclusion
from .negotiation import Decline
from .policy import PeerBuckets, RateLimit

logger = logging.getLogger(__name__)

AUDIT_RATE = RateLimit(per_second=1.0, burst=10)
"""Audit notices per sender: 10 at once, then one a second."""
MAX_NOTICE_ENTRIES = 64
"""Entries one notice carries; more wait for the next notice."""
MAX_PROOF_HASHES = 128
"""Hashes in one proof (a log of 2^64 entries needs fewer)."""


class ProvenEntry(BaseModel):
    """One entry of the sender's log, with its inclusion proof in the notice's head."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0)
    """Its place in the log."""
    entry: AuditEntry
    proof: tuple[str, ...] = Field(max_length=MAX_PROOF_HASHES)
    """Hex hashes of its audit path (RFC 9162 2.1.3)."""


class AuditNotice(Message, type="market.audit_head/1"):
    """New entries about the addressed agent, under a fresh signed head of the whole log."""

    head: SignedTreeHead
    entries: tuple[ProvenEntry, ...] = Field(min_length=1, max_length=MAX_NOTICE_ENTRIES)
    first: int | None = None
    """The size `proof` starts from (the head the addressee took last); None: no proof."""
    proof: tuple[str, ...] = Field(default=(), max_length=MAX_PROOF_HASHES)
    """Hex hashes of the consistency proof from `first` to ``head.size``."""


class AuditTaken(Message, type="market.audit_taken/1"):
    """What the addressee made of a head (`audit_log.check_head`'s outcome)."""

    outcome: str
    have: int
    """The size of the head the addressee now holds of the sender's log."""
    detail: str = ""


class AuditDesk:
    """Takes partners' audit notices for the node's agents, at `AUDIT_RATE` per sender."""

    def __init__(self, ledger: Ledger, rate: RateLimit = AUDIT_RATE) -> None:
        self._ledger = ledger
        self._rate = PeerBuckets(rate)

    async def receive(self, me: str, sender: str, msg: AuditNotice,
                      now: float) -> AuditTaken | Decline:
        """Check `msg` from `sender` to our agent `me`, then judge its head."""
        if not self._rate.take(sender, now):
            return Decline(dialogue="", reason="rate_limited",
                           detail=f"more than {self._rate.rate.per_second:g} audit notices a "
                                  "second; slow down")
        head = msg.head
        try:
            head.verify()
            found = []
            for proven in msg.entries:
                entry = proven.entry
                if entry.owner != me or entry.agent != sender:
                    return Decline(dialogue="", reason="audit_refused",
                                   detail=f"entry {proven.index} is not about you by me "
                                          "(owner: the addressee, agent: the sender)")
                path = [bytes.fromhex(p) for p in proven.proof]
                verify_inclusion(proven.index, head.size, entry.leaf_hash(), path,
                                 head.root_bytes)
                found.append((proven.index, entry, path))
            proof = [bytes.fromhex(p) for p in msg.proof]
            verdict, have = await self._ledger.receive_audit_head(
                head, msg.first, proof, found, sender=sender)
        except ValueError:
            return Decline(dialogue="", reason="audit_refused", detail="a proof is not hex")
        except (ContractRejected, LedgerError) as exc:
            logger.warning("audit notice from %s refused: %s", sender, exc,
                           extra={"event": "audit_refused"})
            return Decline(dialogue="", reason="audit_refused", detail=str(exc)[:200])
        if verdict.caught:
            logger.warning("the audit log of %s was changed: %s (%s)", head.log,
                           verdict.outcome, verdict.detail,
                           extra={"event": "audit_caught", "log": head.log,
                                  "outcome": verdict.outcome})
        else:
            logger.info("audit head %d of %s: %s", head.size, head.log, verdict.outcome,
                        extra={"event": "audit_head_taken", "log": head.log,
                               "outcome": verdict.outcome, "size": head.size})
        return AuditTaken(outcome=verdict.outcome, have=have, detail=verdict.detail)


async def report_audit(ledger: Ledger, agents: Mapping[str, Agent],
                       context: Callable[[Agent], Context], *, silenced: set[str],
                       timeout: float = 10.0) -> int:
    """Send every partner the entries about it it has not taken yet; one pass.

    A partner that caught our log is added to `silenced` and not sent to again (the node
    logs it; its operator decides). Returns how many notices a partner took.

    Raises:
        LedgerError: the books could not be read (the next pass tries again).
    """
    taken = 0
    for owner, after, acked in await ledger.audit_pending(set(agents)):
        if owner in silenced:
            continue
        head, found, proof = await ledger.audit_report(owner, after, MAX_NOTICE_ENTRIES,
                                                       acked or None)
        if not found:
            continue
        agent = agents.get(found[0][1].agent)
        if agent is None:  # recorded for an agent this node does not host: nobody can send it
            last = next((i for i, e, _ in found if e.agent != found[0][1].agent), None)
            await ledger.audit_reported(owner, last if last is not None else
                                        found[-1][0] + 1, acked)
            logger.warning("audit entries about %s by %s skipped: not an agent of this node",
                           owner, found[0][1].agent)
            continue
        mine = []
        for item in found:  # one sender per notice: the partner checks entry.agent == sender
            if item[1].agent != agent.address:
                break
            mine.append(item)
        reply = await _send(context(agent), owner, head, mine, acked or None, proof, timeout)
        if isinstance(reply, AuditTaken) and reply.outcome == "need_proof":
            head, mine, proof = await ledger.audit_report(owner, after, len(mine), reply.have)
            reply = await _send(context(agent), owner, head, mine, reply.have, proof, timeout)
        if not isinstance(reply, AuditTaken) or reply.outcome == "need_proof":
            continue  # unanswered, or its head moved meanwhile: the next pass sends again
        if reply.outcome in ("first", "same", "extends"):
            await ledger.audit_reported(owner, mine[-1][0] + 1, head.size)
            taken += 1
        else:
            silenced.add(owner)
            logger.warning("partner %s refuses our audit head of %d: %s (%s)", owner,
                           head.size, reply.outcome, reply.detail,
                           extra={"event": "audit_head_refused", "partner": owner,
                                  "outcome": reply.outcome})
    return taken


async def _send(ctx: Context, owner: str, head: SignedTreeHead,
                found: list[tuple[int, AuditEntry, list[bytes]]], first: int | None,
                proof: list[bytes], timeout: float) -> Message | None:
    notice = AuditNotice(head=head, first=first, proof=tuple(p.hex() for p in proof),
                         entries=tuple(ProvenEntry(index=i, entry=e,
                                                   proof=tuple(p.hex() for p in path))
                                       for i, e, path in found))
    try:
        return await ctx.ask(owner, notice, timeout=timeout)
    except (AaexError, TimeoutError) as exc:
        logger.debug("audit notice to %s unanswered: %s", owner, exc)
        return None
