"""A validator as the arbiter both parties named: it re-executes a disputed per-token sale.

Three `aaex node run` processes, each with its own key, config and ledger: a buyer that lies
(it signs a receipt saying a metered sale used no tokens, tests/peers/lying_party.py), an
honest language-model seller, and a validator's node with its own copy of the model. The
buyer names the validator as its calls' arbiter and the seller accepts it. The seller's node
disputes the lying receipt; its operator exports the evidence and has the validator decide
(`aaex validator arbitrate`): the validator runs the task again, greedily, on its own model,
gets the very text and token counts the seller signed, and signs a decision paying the
seller exactly those tokens. Submitted by the seller's operator, it ends the dispute on both
books. A task other than the agreed one is refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marketplace.contracts.ledger import open_ledger
from marketplace.node.accounts import agent_key_path, load_or_create_identity
from marketplace.node.config import load_config
from tests.node_kit import aaex, buy_until, running_node
from tests.test_operators_disputes import LLM_SELLER_TOML, operators
from tests.test_operators_expiry import BUYER_TOML

VALIDATOR_TOML = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = []
drain_timeout = 1

[llm]
backend = "llamacpp"
n_ctx = 512
n_threads = 1

[[agents]]
name = "validator"
class = "marketplace:Validator"
settings = { capabilities = ["llm.chat"], stake = 1 }
"""
TASK = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}


@pytest.mark.timeout(300)
async def test_a_validator_named_arbiter_re_executes_a_disputed_metered_sale_and_decides_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("llama_cpp", reason="the CPU model needs the cpu extra")
    (tmp_path / "validator").mkdir()
    validator_toml = tmp_path / "validator" / "node.toml"
    validator_toml.write_text(VALIDATOR_TOML)
    arbiter = load_or_create_identity(agent_key_path(load_config(validator_toml), "validator"))
    ops = operators(tmp_path, TASK, BUYER_TOML.replace(
        "[market]\n", f'[market]\narbiter = "{arbiter.address}"\n'))
    seller_toml, buyer_toml = ops.seller_toml, ops.buyer_toml
    async with running_node(validator_toml), \
            running_node(buyer_toml, lie="zero_tokens") as buyer:
        seller_toml.write_text(LLM_SELLER_TOML.format(seed=buyer.ready["p2p"][0]).replace(
            "drain_timeout = 2\n",
            f'drain_timeout = 2\n\n[market]\narbiters = ["{arbiter.address}"]\n'))
        assert (await aaex(capsys, "account", "deposit", "--config", str(buyer_toml),
                           "shopper", "1"))[0] == 0
        async with running_node(seller_toml) as seller:
            code, out = await buy_until(capsys, ops, "llm.chat", budget="0.5", deadline="150",
                                        done=lambda code, out: code == 0)
            assert code == 0, out  # the lying buyer kept the text and paid nothing
            agreement_id = (await seller.event("disputed"))["agreement_id"]
            code, out, _ = await aaex(capsys, "dispute", "show", "--config", str(seller_toml),
                                      agreement_id, "--json")
            claimed = {c["field"]: int(c["seller"]) for c in json.loads(out)["conflicts"]
                       if c["field"] in ("usage.input_tokens", "usage.output_tokens")}
            evidence, decision = tmp_path / "evidence.json", tmp_path / "decision.json"
            assert (await aaex(capsys, "dispute", "export", "--config", str(seller_toml),
                               agreement_id, "--out", str(evidence)))[0] == 0

            other = tmp_path / "other-task.json"
            other.write_text(json.dumps({**TASK, "max_tokens": 9}))
            code, _, err = await aaex(capsys, "validator", "arbitrate", "validator",
                                      str(evidence), "--task", str(other), "--config",
                                      str(validator_toml), "--out", str(decision))
            assert code == 2 and "task: not the task this agreement was made for" in err, err
            assert not decision.exists()

            code, out, err = await aaex(capsys, "validator", "arbitrate", "validator",
                                        str(evidence), "--task", str(ops.task), "--config",
                                        str(validator_toml), "--out", str(decision))
            assert code == 0 and out.startswith("decision signed"), out + err
            signed = json.loads(decision.read_text())
            assert list(signed["signatures"]) == [arbiter.address]
            # the re-run gave the seller's very counts: it is paid exactly those tokens
            # (the seller's prices: 0.01 and 0.02 credits per 1,000 tokens)
            expected = claimed["usage.input_tokens"] * 10 + claimed["usage.output_tokens"] * 20
            assert "the same" in signed["resolution"]["note"], signed
            code, out, err = await aaex(capsys, "dispute", "resolve", "--config",
                                        str(seller_toml), agreement_id, "--decision",
                                        str(decision))
            assert code == 0 and "the partner: resolved" in out, out + err
    for side in ("buyer", "seller"):
        async with open_ledger(ops.books(side)) as books:
            await books.verify()
            [line] = [line for line in await books.lines() if line.agreement_id == agreement_id]
            assert (line.verdict, line.amount.micro) == ("resolved", expected), side
