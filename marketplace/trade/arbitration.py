"""A validator as the arbiter of a per-token sale: it re-executes the task and decides.

When two parties name a validator as their agreement's arbiter (the buyer's ``[market]
arbiter``, which the seller accepts in ``[market] arbiters``), a dispute over a metered
language-model sale can be ended by that validator alone. It does not weigh the parties'
words: it runs the task again on its own node's model. Greedy decoding (temperature 0, the
chat task's default) is deterministic for one model and engine, so the re-run gives the
token counts the seller's engine should have counted and, when the seller ran the model it
sold, the very text it delivered.

The decision (`arbitrate`): the agreed per-token prices applied to the re-run's counts, the
output tokens only if the re-run reproduced the delivered text (a delivery that cannot be
reproduced earns its prompt, not its answer), never more than the escrowed price; the rest
goes back to the buyer, and no penalty. It is a `SignedResolution` signed by the validator,
which either party submits (``aaex dispute resolve --decision``) and both books accept
because the agreement names its signer. Refused, in one line: a bundle that does not verify,
an agreement naming another arbiter, a task whose hash is not the agreed one, a sale that is
not per-token, a task sampled above temperature 0 (not reproducible: decide it by hand with
``aaex dispute decide``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from aaex_agents.errors import UsageError
from aaex_agents.identity import Identity
from aaex_agents.llm.base import Completion, Request
from aaex_agents.money import ZERO

from ..contracts.dispute import Resolution, SignedResolution
from ..contracts.errors import ContractRejected
from ..contracts.evidence import verify_evidence
from ..contracts.sla import TokenUsage, token_cost
from .llm_seller import chat_request
from .task_models import task_hash


class Engine(Protocol):
    """What re-executes a task: the node's LLM service, or an `LLM`."""

    async def generate(self, request: Request) -> Completion:
        """The completion of `request`."""
        ...


async def arbitrate(arbiter: Identity, llm: Engine, evidence: object,
                    task: Mapping[str, Any]) -> SignedResolution:
    """Re-execute the disputed sale's `task` on `llm` and sign the decision as `arbiter`.

    Raises:
        UsageError: the bundle, the task or the sale is not one this arbiter can decide
            (the message says which, in one line).
    """
    try:
        checked = verify_evidence(evidence)
    except ContractRejected as exc:
        raise UsageError(f"evidence: {exc}") from None
    signed = checked.signed
    terms = signed.agreement.terms
    if terms.arbiter != arbiter.address:
        raise UsageError(f"evidence: the agreement names arbiter {terms.arbiter}, not this "
                         f"validator ({arbiter.address})")
    if task_hash(task) != terms.task_hash:
        raise UsageError("task: not the task this agreement was made for (its hash differs "
                         "from the agreed task_hash)")
    if terms.tokens is None:
        raise UsageError("evidence: not a per-token sale; a validator re-executes only "
                         "language-model sales (decide others with aaex dispute decide)")
    try:
        request = chat_request(task, cap=terms.tokens.max_output_tokens)
    except ValueError as exc:
        raise UsageError(f"task: {exc}") from None
    if request.temperature != 0:
        raise UsageError(f"task: sampled at temperature {request.temperature:g}, so a re-run "
                         "cannot reproduce it; decide it with aaex dispute decide")
    rerun = await llm.generate(request)
    delivered = (checked.delivery or {}).get("result", {})
    text = delivered.get("text") if isinstance(delivered, Mapping) else None
    same = isinstance(text, str) and text == rerun.text
    output = rerun.usage.completion_tokens if same else 0
    charge = token_cost(terms.tokens, TokenUsage(
        input_tokens=rerun.usage.prompt_tokens, output_tokens=output, ttft_ms=0,
        generation_ms=0, input_bytes=0, output_bytes=0))
    to_seller = min(charge, terms.price)
    note = (f"re-run on {rerun.model}: {rerun.usage.prompt_tokens} prompt tokens, "
            + (f"the same {output} output tokens" if same else
               "a different answer (its output is not paid)"))
    resolution = Resolution(agreement_id=signed.id, to_seller=to_seller,
                            to_buyer=terms.price - to_seller, penalty=ZERO,
                            note=note[:200], at_ms=max(1, checked.dispute.dispute.at_ms))
    decision = SignedResolution(resolution=resolution, signatures={}).signed_by(arbiter)
    decision.verify_against(signed)
    return decision
