"""``GET /consensus``: what the validators' consensus says of each capability's sellers.

    GET /consensus              the latest epoch of every capability
    GET /consensus?epoch=12     epoch 12, where it is still kept (`KEPT_EPOCHS`)
    GET /validators             the validators this node hosts and what they scored last
    POST /validators/stake      {"agent": NAME, "amount": "5"}   stake credits on the chain
    POST /validators/unstake    {"agent": NAME, "amount": "5"}   start unbonding them
    POST /validators/withdraw   {"agent": NAME}                  take back what has unbonded
    POST /validators/arbitrate  {"agent": NAME, "evidence": {...}, "task": {...}}
                                re-execute a disputed per-token sale, answer the decision

The document is `ConsensusBook.document`: per capability, the epoch and every seller's
incentive (a fraction of the emission) and quality (incentive over the best seller's, what
awards blend with receipt reputation; docs/consensus.md). A read route like ``/status``: no
token. ``aaex consensus show`` prints it. The three writes need the admin token and a
validator bound to a chain (``[chain]``, node/chain.py); they answer the account's state on
chain afterwards, or the contract's refusal in one line (409), or 503 when the chain's node
does not answer. ``aaex validator stake|unstake|withdraw`` sends them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from aaex_agents.errors import UsageError, quote
from aaex_agents.money import Credits

from ..consensus.chain_board import ChainBoard
from ..consensus.errors import ChainError, ChainRefused, ChainUnavailable
from ..trade.arbitration import arbitrate
from ..trade.validator import Validator
from .accounts import resolve_agent
from .admin_writes import json_body
from .responses import json_response
from .validators import account_state_document, validators_document

if TYPE_CHECKING:
    from aaex_agents.llm.service import LLMService
    from aaex_agents.runtime import Runtime

    from ..trade.market import NodeMarket

logger = logging.getLogger(__name__)

MAX_EPOCH = 2**63 - 1
"""The largest epoch number the route takes."""


class ConsensusView(Protocol):
    """What the routes need of a node: its market (the `ConsensusBook`) and its agents."""

    @property
    def runtime(self) -> Runtime:
        """The hosted agents (``/validators`` lists the `Validator`s among them)."""

    @property
    def llm(self) -> LLMService | None:
        """The node's language model, which a validator re-executes disputed sales on."""

    @property
    def market(self) -> NodeMarket:
        """Where the hosted agents buy; `market.consensus` is what validators computed."""


def add_validator_routes(app: web.Application, node: ConsensusView, guarded: Any) -> None:
    """Add the staking routes; `guarded(view, write=...)` applies the token and the errors."""
    def validator_named(body: dict[str, Any]) -> tuple[str, Validator]:
        agents = {a.name: a.address for a in node.runtime.agents.values()}
        name, address = resolve_agent(agents, body.get("agent"))
        validator = node.runtime.agents[address]
        if not isinstance(validator, Validator):
            raise UsageError(f"agent: {name} is not a validator")
        return name, validator

    async def move(request: web.Request) -> web.Response:
        action = request.path.rsplit("/", 1)[1]
        body = await json_body(request)
        name, validator = validator_named(body)
        if not isinstance(validator.board, ChainBoard):
            raise UsageError(f"agent: {name} is not a validator on a chain; give the node a "
                             "[chain] section")
        client = validator.board.client
        try:
            if action == "withdraw":
                await client.withdraw()
            else:
                amount = Credits.parse(body.get("amount"), "amount")
                await (client.stake if action == "stake" else client.request_unstake)(amount)
            state = await client.account_state()
        except ChainRefused as exc:
            return json_response({"error": str(exc)}, status=409)
        except ChainUnavailable as exc:
            return json_response({"error": f"the chain does not answer: {exc}"}, status=503)
        logger.info("validator %s: %s done on chain", name, action,
                    extra={"event": f"validator_{action}", "agent": name})
        return json_response({"agent": name, "account": client.address,
                              **account_state_document(state)})

    async def decide(request: web.Request) -> web.Response:
        body = await json_body(request)
        name, validator = validator_named(body)
        if node.llm is None:
            raise UsageError("this node runs no language model to re-execute the task on; "
                             "give it an [llm] section")
        task = body.get("task")
        if not isinstance(task, dict):
            raise UsageError("task: send the disputed sale's task as a JSON object")
        decision = await arbitrate(validator.identity, node.llm.for_agent(validator.address),
                                   body.get("evidence"), task)
        logger.info("validator %s decided the dispute of %s", name,
                    decision.resolution.agreement_id[:12],
                    extra={"event": "arbitrated", "agent": name,
                           "agreement_id": decision.resolution.agreement_id})
        return json_response(decision.model_dump(mode="json"))

    for action in ("stake", "unstake", "withdraw"):
        app.router.add_post(f"/validators/{action}", guarded(move, write=True))
    app.router.add_post("/validators/arbitrate", guarded(decide, write=True))


def add_consensus_route(app: web.Application, node: ConsensusView) -> None:
    """Serve ``GET /consensus`` on `app`."""
    async def consensus(request: web.Request) -> web.Response:
        text = request.query.get("epoch")
        if text is not None and not (text.isdigit() and int(text) <= MAX_EPOCH):
            return json_response({"error": f"epoch: give a whole number from 0, got "
                                           f"{quote(text[:40])}"}, status=400)
        epoch = None if text is None else int(text)
        return json_response(node.market.consensus.document(epoch))

    async def validators(request: web.Request) -> web.Response:
        agents = list(node.runtime.agents.values())
        document = validators_document(agents)
        for entry in document:  # a validator on a chain: its account's credits there
            board = getattr(node.runtime.agents[entry["address"]], "board", None)
            if isinstance(board, ChainBoard):
                try:
                    entry["chain"] = account_state_document(
                        await board.client.account_state())
                except ChainError as exc:
                    entry["chain"] = {"error": str(exc)}
        return json_response(document)

    app.router.add_get("/consensus", consensus)
    app.router.add_get("/validators", validators)
