"""The validators a node hosts: their board (the chain, or one inside the node), their status.

    [[agents]]
    name = "validator"
    class = "marketplace:Validator"
    settings = { capabilities = ["forecast.demand"], stake = 10, sellers = ["aaex1..."] }

A `Validator` named in the TOML has no board of its own; `bind_validators` gives the
validators of one node a shared in-process board (`MemoryChain`), on the node's clock, where
each stakes its `stake` setting and the `sellers` of all of them are registered for their
capabilities, and the node market's `ConsensusBook`, which its awards read. With a
``[chain]`` section each is bound to the consensus contract instead (`node/chain.py`,
docs/consensus.md). `validators_document`
is what ``GET /validators`` and ``aaex validator status`` show.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AsyncExitStack
from typing import Any

from aaex_agents import Agent
from aaex_agents.clock import Clock
from aaex_agents.identity import Identity

from ..consensus.board import MemoryChain
from ..consensus.chain_client import AccountState
from ..contracts.ledger import Ledger
from ..trade.market import NodeMarket
from ..trade.validator import Validator
from .chain import ChainSection, open_node_chain, validator_board


async def bind_validators(agents: Iterable[Agent], market: NodeMarket, clock: Clock,
                          books: Ledger, *, stack: AsyncExitStack, node: Identity,
                          section: ChainSection | None) -> MemoryChain | None:
    """Bind every hosted validator without a board: to the chain, or one board on this node.

    Their probes escrow and settle on `books` (the node's ledger), as any purchase does.
    With a ``[chain]`` `section`, each is bound to the contract as its own chain account
    (the node's client of the chain, signing as `node`, closes with `stack`). Otherwise they
    share a `MemoryChain` on the first validator's epochs (`Validator.times`), which is
    returned; None when the node hosts no validator or they are on the chain.
    """
    validators = [a for a in agents if isinstance(a, Validator)]
    if not validators:
        return None
    if section is not None:
        client = await open_node_chain(stack, section, node, validators, clock)
        for validator in validators:
            if validator.board is None:
                validator.bind(validator_board(client, section, validator.identity),
                               market.consensus, books)
        return None
    chain = MemoryChain(clock, validators[0].times)
    for validator in validators:
        chain.staked[validator.address] = validator.stake.micro
        for capability in validator.probes:
            registered = chain.registered.setdefault(capability, [])
            registered += [s for s in validator.sellers if s not in registered]
    for validator in validators:
        if validator.board is None:
            validator.bind(chain.account(validator.address), market.consensus, books)
    return chain


def account_state_document(state: AccountState) -> dict[str, Any]:
    """A chain account's credits as the admin API shows them."""
    return {**state.balance.document("balance"), **state.stake.document("stake_on_chain"),
            **state.unbonding.document("unbonding"), "unbond_at_block": state.unbond_at}


def validators_document(agents: Iterable[Agent]) -> list[dict[str, Any]]:
    """Each hosted validator: its account, stake, last epoch and what it scored last."""
    out = []
    for agent in agents:
        if not isinstance(agent, Validator):
            continue
        scored: dict[str, Any] = {}
        for (capability, epoch), scores in sorted(agent.scores.items(), key=lambda i: i[0][1]):
            average = agent.kept[capability].average
            scored[capability] = {"epoch": epoch, "sellers": [
                {"seller": seller, "probes": len(got),
                 "score": round(sum(got) / len(got), 4) if got else None,
                 "average": round(average.get(seller, 0.0), 4)}
                for seller, got in sorted(scores.items())]}
        out.append({"name": agent.name, "address": agent.address,
                    "account": None if agent.board is None else agent.board.address,
                    "capabilities": sorted(agent.probes),
                    **agent.stake.document("stake"), "last_epoch": agent.last_epoch,
                    "scored": scored,
                    "epochs": [agent.epochs[k] for k in sorted(agent.epochs,
                                                               key=lambda k: (k[1], k[0]))]})
    return out
